import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadIdentity } from '../../agent/device/identity.js';
import { deriveAccessKey, deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { loadMasterKey } from '../../agent/pki/master-key.js';
import { PASSWORD_ALPHABET } from '../../agent/pki/password.js';
import { EXIT_USAGE, USAGE, main } from '../../scripts/provision.js';
import { runNode, type Run } from '../helpers/run-process.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/provision.js', import.meta.url));
const PASSWORD_LINE = new RegExp(`^password: [${PASSWORD_ALPHABET}]{4}(-[${PASSWORD_ALPHABET}]{4}){4}\\n$`);

const run = (args: readonly string[], cwd: string, script = SCRIPT): Promise<Run> => runNode(script, args, { cwd });

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-provision-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

/** ca -> server-cert -> master-key in `dir`; returns the paths. */
async function provisionServer(t: { is: (a: unknown, b: unknown, m?: string) => void }, dir: string) {
  const caDir = join(dir, 'ca');
  const srvDir = join(dir, 'server');
  const masterKey = join(dir, 'master.key');
  let r = await run(['ca', '--out-dir', caDir, '--cn', 'Test CA', '--days', '30'], dir);
  t.is(r.code, 0, r.stderr);
  r = await run(['server-cert', '--ca-dir', caDir, '--host', 'localhost', '--host', '127.0.0.1', '--out-dir', srvDir], dir);
  t.is(r.code, 0, r.stderr);
  r = await run(['master-key', '--out', masterKey], dir);
  t.is(r.code, 0, r.stderr);
  return { caDir, srvDir, masterKey, caCert: join(caDir, 'ca.pem') };
}

test('end to end: ca, server-cert, master-key, device', async (t) => {
  await withTempDir(async (dir) => {
    const { caDir, srvDir, masterKey, caCert } = await provisionServer(t, dir);

    t.is(await modeOf(join(caDir, 'ca.pem')), 0o644);
    t.is(await modeOf(join(caDir, 'ca.key')), 0o600);
    const ca = new X509Certificate(await readFile(caCert, 'utf8'));
    t.true(ca.ca);
    t.is(ca.subject, 'CN=Test CA');

    t.is(await modeOf(join(srvDir, 'server.pem')), 0o644);
    t.is(await modeOf(join(srvDir, 'server.key')), 0o600);
    const leaf = new X509Certificate(await readFile(join(srvDir, 'server.pem'), 'utf8'));
    t.true(leaf.checkIssued(ca));
    t.true(leaf.verify(ca.publicKey));
    t.is(leaf.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1');
    t.is(leaf.validTo, ca.validTo, 'clamped to the 30-day CA');

    t.is(await modeOf(masterKey), 0o600);
    const master = await loadMasterKey(masterKey);

    const out = join(dir, 'identity.toml');
    const r = await run(['device', '--id', 'unit-42', '--master-key', masterKey, '--ca-cert', caCert, '--out', out], dir);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, PASSWORD_LINE);
    t.is(r.stderr, '');
    t.is(await modeOf(out), 0o600);
    const password = r.stdout.slice('password: '.length).trim();
    const identity = await loadIdentity(out);
    t.is(identity.equipmentId, 'unit-42');
    t.deepEqual(identity.registrationKey, deriveRegistrationKey(master, 'unit-42'));
    t.deepEqual(identity.accessKey, await deriveAccessKey(password, 'unit-42'));
    t.is(identity.caCert, ca.toString());
    t.false((await readFile(out, 'utf8')).includes(password));
  });
});

test('device --password-file: uses the first line and prints nothing', async (t) => {
  await withTempDir(async (dir) => {
    const { masterKey, caCert } = await provisionServer(t, dir);
    const pwFile = join(dir, 'pw.txt');
    await writeFile(pwFile, '  q7km-2zx9-tw4h-rc8n-3vbp  \nsecond line\n');
    const out = join(dir, 'identity.toml');
    const r = await run(
      ['device', '--id', 'dev1', '--master-key', masterKey, '--ca-cert', caCert, '--out', out, '--password-file', pwFile],
      dir,
    );
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, '');
    t.is(r.stderr, '');
    t.deepEqual((await loadIdentity(out)).accessKey, await deriveAccessKey('Q7KM-2ZX9-TW4H-RC8N-3VBP', 'dev1'));

    await writeFile(pwFile, '\nlater\n');
    const empty = await run(
      ['device', '--id', 'dev2', '--master-key', masterKey, '--ca-cert', caCert, '--out', join(dir, 'id2.toml'), '--password-file', pwFile],
      dir,
    );
    t.is(empty.code, 1);
    t.regex(empty.stderr, /^peerlink-provision: /);

    // A 4-digit PIN falls to offline guessing in seconds: refused, naming the file.
    await writeFile(pwFile, '1234\n');
    const weak = await run(
      ['device', '--id', 'dev3', '--master-key', masterKey, '--ca-cert', caCert, '--out', join(dir, 'id3.toml'), '--password-file', pwFile],
      dir,
    );
    t.is(weak.code, 1);
    t.true(weak.stderr.startsWith(`peerlink-provision: ${pwFile}: the password is too weak`), weak.stderr);
  });
});

test('existing secrets are not overwritten without --force', async (t) => {
  await withTempDir(async (dir) => {
    const { caDir, masterKey, caCert } = await provisionServer(t, dir);
    const out = join(dir, 'identity.toml');
    const first = await run(['device', '--id', 'dev1', '--master-key', masterKey, '--ca-cert', caCert, '--out', out], dir);
    t.is(first.code, 0, first.stderr);

    const before = {
      caKey: await readFile(join(caDir, 'ca.key'), 'utf8'),
      caPem: await readFile(caCert, 'utf8'),
      master: await readFile(masterKey, 'utf8'),
      identity: await readFile(out, 'utf8'),
    };
    const refusals = [
      ['ca', '--out-dir', caDir],
      ['master-key', '--out', masterKey],
      ['device', '--id', 'dev1', '--master-key', masterKey, '--ca-cert', caCert, '--out', out],
    ];
    for (const args of refusals) {
      const r = await run(args, dir);
      t.is(r.code, 1, args[0]);
      t.is(r.stdout, '', 'no password printed when refused');
      t.regex(r.stderr, /^peerlink-provision: .*--force/);
    }
    t.is(await readFile(join(caDir, 'ca.key'), 'utf8'), before.caKey);
    t.is(await readFile(caCert, 'utf8'), before.caPem);
    t.is(await readFile(masterKey, 'utf8'), before.master);
    t.is(await readFile(out, 'utf8'), before.identity);

    const forced = await run(['master-key', '--out', masterKey, '--force'], dir);
    t.is(forced.code, 0, forced.stderr);
    t.not(await readFile(masterKey, 'utf8'), before.master);
    t.is(await modeOf(masterKey), 0o600);
    const forcedDevice = await run(
      ['device', '--id', 'dev1', '--master-key', masterKey, '--ca-cert', caCert, '--out', out, '--force'],
      dir,
    );
    t.is(forcedDevice.code, 0, forcedDevice.stderr);
    t.not(await readFile(out, 'utf8'), before.identity);
  });
});

test('server-cert: an ECDSA P-256 key by default, RSA 2048 with --key-type rsa; renew-server-cert the same', async (t) => {
  await withTempDir(async (dir) => {
    const { caDir, srvDir } = await provisionServer(t, dir);
    const key = async (): Promise<string | undefined> =>
      new X509Certificate(await readFile(join(srvDir, 'server.pem'))).publicKey.asymmetricKeyType;
    t.is(await key(), 'ec');
    let r = await run(['server-cert', '--ca-dir', caDir, '--host', 'localhost', '--out-dir', srvDir, '--key-type', 'rsa'], dir);
    t.is(r.code, 0, r.stderr);
    t.is(await key(), 'rsa');
    r = await run(['renew-server-cert', '--ca-dir', caDir, '--dir', srvDir], dir);
    t.is(r.code, 0, r.stderr);
    t.is(await key(), 'ec');
    r = await run(['renew-server-cert', '--ca-dir', caDir, '--dir', srvDir, '--key-type', 'rsa'], dir);
    t.is(r.code, 0, r.stderr);
    t.is(await key(), 'rsa');
  });
});

test('usage errors exit 2 with a prefixed message on stderr', async (t) => {
  await withTempDir(async (dir) => {
    const cases = [
      [],
      ['frobnicate'],
      ['ca'],
      ['ca', '--out-dir', dir, '--bogus'],
      ['ca', '--out-dir', dir, '--days', 'ten'],
      ['ca', '--out-dir', dir, '--days', '0'],
      ['ca', '--out-dir', dir, 'extra-positional'],
      ['server-cert', '--ca-dir', dir, '--out-dir', dir],
      ['server-cert', '--ca-dir', dir, '--out-dir', dir, '--host', 'not a host'],
      ['server-cert', '--ca-dir', dir, '--out-dir', dir, '--host', 'localhost', '--key-type', 'dsa'],
      ['master-key'],
      ['master-key', '--out'],
      ['device', '--id', 'bad id', '--master-key', 'm', '--ca-cert', 'c', '--out', 'o'],
      ['device', '--id', 'dev1'],
    ];
    for (const args of cases) {
      const r = await run(args, dir);
      t.is(r.code, EXIT_USAGE, args.join(' '));
      t.is(r.stdout, '', args.join(' '));
      t.regex(r.stderr, /^peerlink-provision: /, args.join(' '));
    }
  });
});

test('operational failures exit 1', async (t) => {
  await withTempDir(async (dir) => {
    const missingCa = await run(['server-cert', '--ca-dir', join(dir, 'nope'), '--host', 'localhost', '--out-dir', dir], dir);
    t.is(missingCa.code, 1);
    await writeFile(join(dir, 'master.key'), 'not a key\n', { mode: 0o600 });
    const badKey = await run(
      ['device', '--id', 'd', '--master-key', join(dir, 'master.key'), '--ca-cert', 'x', '--out', join(dir, 'o')],
      dir,
    );
    t.is(badKey.code, 1);
    t.regex(badKey.stderr, /^peerlink-provision: .*master\.key/);
  });
});

test('--help prints usage, also when run through a symlink (npm bin)', async (t) => {
  await withTempDir(async (dir) => {
    const direct = await run(['--help'], dir);
    t.is(direct.code, 0);
    t.is(direct.stdout, USAGE);
    const link = join(dir, 'peerlink-provision');
    await symlink(SCRIPT, link);
    const viaLink = await run(['device', '--help'], dir, link);
    t.is(viaLink.code, 0);
    t.is(viaLink.stdout, USAGE);
  });
});

test('main() is callable in-process and importing the module runs nothing', async (t) => {
  let stdout = '';
  let stderr = '';
  const io = { stdout: (s: string) => (stdout += s), stderr: (s: string) => (stderr += s) };
  t.is(await main(['--help'], io), 0);
  t.is(stdout, USAGE);
  t.is(await main(['nope'], io), EXIT_USAGE);
  t.regex(stderr, /^peerlink-provision: /);
});

test('the script starts with a shebang', async (t) => {
  t.true((await readFile(SCRIPT, 'utf8')).startsWith('#!/usr/bin/env node\n'));
});
