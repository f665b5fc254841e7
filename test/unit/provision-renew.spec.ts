/** `peerlink-provision renew-server-cert`: the same names, a fresh key, a new validity, from the same CA. */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_FAILURE, EXIT_OK, main } from '../../scripts/provision.js';

async function cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
  return { code, stdout, stderr };
}

test('renew-server-cert re-issues for the same names with a new key; refuses a directory without a certificate', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-renew-'));
  try {
    const ca = join(dir, 'ca');
    const srv = join(dir, 'srv');
    t.is((await cli(['ca', '--out-dir', ca, '--days', '100'])).code, EXIT_OK);
    t.is(
      (await cli(['server-cert', '--ca-dir', ca, '--host', 'rv.example.com', '--host', '192.0.2.7', '--out-dir', srv, '--days', '10']))
        .code,
      EXIT_OK,
    );
    const oldCert = new X509Certificate(await readFile(join(srv, 'server.pem'), 'utf8'));
    const oldKey = await readFile(join(srv, 'server.key'), 'utf8');
    const r = await cli(['renew-server-cert', '--ca-dir', ca, '--dir', srv, '--days', '50']);
    t.is(r.code, EXIT_OK, r.stderr);
    t.regex(r.stdout, /renewed .*server\.pem for rv\.example\.com, 192\.0\.2\.7/);
    const cert = new X509Certificate(await readFile(join(srv, 'server.pem'), 'utf8'));
    t.is(cert.subjectAltName, oldCert.subjectAltName);
    t.not(cert.serialNumber, oldCert.serialNumber);
    t.not(await readFile(join(srv, 'server.key'), 'utf8'), oldKey, 'a fresh key');
    t.true(new Date(cert.validTo).getTime() > new Date(oldCert.validTo).getTime() + 30 * 86_400_000);
    t.true(cert.checkIssued(new X509Certificate(await readFile(join(ca, 'ca.pem'), 'utf8'))));
    t.is((await stat(join(srv, 'server.key'))).mode & 0o777, 0o600);
    const none = await cli(['renew-server-cert', '--ca-dir', ca, '--dir', join(dir, 'nothing-here')]);
    t.is(none.code, EXIT_FAILURE);
    t.regex(none.stderr, /cannot read the current server certificate/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
