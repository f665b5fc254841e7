/**
 * Fault: the server certificate is renewed (`peerlink-provision renew-server-cert`) while the agent
 * runs, and the server is told with SIGHUP (systemctl reload): new handshakes get the new
 * certificate, the agent keeps serving without a restart, and requests connect. A certificate that
 * is not for this fleet (another CA) is refused by the client with exit 15 and a line that names
 * the cause; a renewed pair that does not match is not loaded (the old one stays in use).
 */
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { echoService, startFlow, type Flow } from '../helpers/flow.js';
import { runNode } from '../helpers/run-process.js';
import { figure, runClient } from '../helpers/faults.js';

/** The fingerprint of the certificate the server presents now. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.destroy();
    });
    s.once('error', reject);
  });
}

async function hup(f: Flow, msg: string): Promise<void> {
  const before = f.server.lines.length;
  f.server.child.kill('SIGHUP');
  await f.server.waitFor((l) => l.msg === msg && f.server.lines.indexOf(l) >= before, 10_000);
}

test('renewed server certificate: served after SIGHUP, the running agent and the client keep working; a foreign one is refused clearly', async (t) => {
  t.timeout(90_000);
  const echo = await echoService(t);
  const f = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const line = 'renewed\n';
  const agentPid = f.agent.child.pid;
  const old = await servedFingerprint(f.setup.tlsPort);

  const caDir = join(f.setup.dir, 'station');
  await mkdir(caDir, { mode: 0o700 });
  await writeFile(join(caDir, 'ca.pem'), f.setup.caPem);
  await writeFile(join(caDir, 'ca.key'), f.setup.caKeyPem, { mode: 0o600 });
  const renew = await runNode(PROGRAMS.provision, ['renew-server-cert', '--ca-dir', caDir, '--dir', f.setup.dir]);
  t.is(renew.code, 0, renew.stderr);
  const t0 = performance.now();
  await hup(f, 'server certificate reloaded');
  figure(t, 'certificate renewed: SIGHUP to the new certificate served', `${Math.round(performance.now() - t0)} ms`);
  t.not(await servedFingerprint(f.setup.tlsPort), old, 'new handshakes get the renewed certificate');
  const after = await runClient(f.clientArgs('echo', ['--stdio']), line).done;
  t.is(after.code, 0, `after the renewal: ${after.said}`);
  t.is(after.stdout, line);
  t.is(f.agent.child.pid, agentPid);
  t.is(f.agent.child.exitCode, null, 'the agent was not restarted');

  // A pair that does not match: not loaded, the renewed one stays in use.
  const stray = issueServerCert({ caCertPem: f.setup.caPem, caKeyPem: f.setup.caKeyPem, hosts: ['localhost', '127.0.0.1'] });
  const renewed = await servedFingerprint(f.setup.tlsPort);
  await writeFile(join(f.setup.dir, 'server.pem'), stray.certPem);
  await hup(f, 'server certificate not reloaded: keeping the one in use');
  figure(
    t,
    'certificate and key that do not match, on SIGHUP',
    String(f.server.lines.findLast((l) => l.msg?.startsWith('server certificate not reloaded'))?.err),
  );
  t.is(await servedFingerprint(f.setup.tlsPort), renewed);

  // A certificate from another CA (not this fleet's): the client refuses it and says why.
  const foreignCa = createCa({ commonName: 'not the fleet CA' });
  const foreign = issueServerCert({ caCertPem: foreignCa.certPem, caKeyPem: foreignCa.keyPem, hosts: ['localhost', '127.0.0.1'] });
  await writeFile(join(f.setup.dir, 'server.pem'), foreign.certPem);
  await writeFile(join(f.setup.dir, 'server.key'), foreign.keyPem, { mode: 0o600 });
  await hup(f, 'server certificate reloaded');
  const refused = await runClient(f.clientArgs('echo', ['--stdio']), line).done;
  t.is(refused.code, 15, `a certificate of another CA: ${refused.said}`);
  figure(t, 'server certificate of another CA: the client says', `exit ${refused.code}: ${refused.said}`);
});
