/** `peerlink-provision batch`: a factory batch, idempotent, all-or-nothing per device, CA key never on a device. */
import test from 'ava';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadIdentity } from '../../agent/device/identity.js';
import { deriveAccessKey, deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { parseConnectUri } from '../../agent/protocol/connect-uri.js';
import { createCa } from '../../agent/pki/ca.js';
import { createRegistrationMasterKey, formatMasterKey } from '../../agent/pki/master-key.js';
import { PASSWORD_ALPHABET } from '../../agent/pki/password.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main } from '../../scripts/provision.js';
import { runNode } from '../helpers/run-process.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/provision.js', import.meta.url));
const GROUPED = new RegExp(`^[${PASSWORD_ALPHABET}]{4}(-[${PASSWORD_ALPHABET}]{4}){4}$`);

interface Station {
  dir: string;
  masterKeyFile: string;
  caFile: string;
  caKey: string;
  masterKey: Buffer;
  out: string;
}

async function station(): Promise<Station> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-batch-'));
  const ca = createCa({ commonName: 'batch test CA', validityDays: 30 });
  const masterKey = createRegistrationMasterKey();
  const masterKeyFile = join(dir, 'master.key');
  await writeFile(masterKeyFile, formatMasterKey(masterKey), { mode: 0o600 });
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  return { dir, masterKeyFile, caFile, caKey: ca.keyPem, masterKey, out: join(dir, 'devices') };
}

async function cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
  return { code, stdout, stderr };
}

const batch = (s: Station, ...more: string[]) =>
  cli(['batch', '--master-key', s.masterKeyFile, '--ca-cert', s.caFile, '--out-dir', s.out, '--jobs', '0', ...more]);
const labelPassword = (svg: string): string => /font-weight="bold">([A-Z0-9-]{24})</.exec(svg)?.[1] ?? '';

test('a serial range gives one whole device per serial: identity 0600 that matches the label password, label with the ID and a connect QR', async (t) => {
  const s = await station();
  try {
    const r = await batch(s, '--range', '7-9', '--digits', '4', '--prefix', 'TV-', '--server', 'rv.example.com:7443');
    t.is(r.code, EXIT_OK, r.stderr);
    t.regex(r.stdout, /3 created, 0 rotated, 0 kept/);
    t.regex(r.stderr, /\[#+\] 3\/3/, 'progress bar');
    t.deepEqual((await readdir(s.out)).sort(), ['TV-0007', 'TV-0008', 'TV-0009', 'manifest.csv']);
    const passwords = new Set<string>();
    for (const id of ['TV-0007', 'TV-0008', 'TV-0009']) {
      const idFile = join(s.out, id, 'identity.toml');
      const labelFile = join(s.out, id, 'label.svg');
      t.is((await stat(idFile)).mode & 0o777, 0o600);
      t.is((await stat(labelFile)).mode & 0o777, 0o600, 'the label shows the password');
      const identity = await loadIdentity(idFile);
      const svg = await readFile(labelFile, 'utf8');
      const password = labelPassword(svg);
      t.regex(password, GROUPED);
      passwords.add(password);
      t.true(svg.includes(`>${id}<`));
      t.deepEqual(identity.registrationKey, deriveRegistrationKey(s.masterKey, id));
      t.deepEqual(identity.accessKey, await deriveAccessKey(password, id), 'the label password opens this device');
      const text = await readFile(idFile, 'utf8');
      t.false(text.includes(password.replace(/-/g, '')) || text.includes(password), 'no password on the device');
      t.false(/PRIVATE KEY/.test(text), 'no CA key on the device');
      t.true(/<path fill="#000" d="M4 4h7v1h-7z/.test(svg), 'QR code with its finder pattern and quiet zone');
    }
    t.is(passwords.size, 3, 'unique passwords');
    t.regex(await readFile(join(s.out, 'manifest.csv'), 'utf8'), /^equipment_id,serial,mac,event,time\nTV-0007,0007,,created,/);
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('re-running a batch keeps existing devices; --rotate gives them new secrets', async (t) => {
  const s = await station();
  try {
    t.is((await batch(s, '--range', '1-2')).code, EXIT_OK);
    const before = await readFile(join(s.out, '1', 'identity.toml'), 'utf8');
    const again = await batch(s, '--range', '1-3');
    t.is(again.code, EXIT_OK, again.stderr);
    t.regex(again.stdout, /1 created, 0 rotated, 2 kept/);
    t.is(await readFile(join(s.out, '1', 'identity.toml'), 'utf8'), before, 'identity kept');
    const rotated = await batch(s, '--range', '1-1', '--rotate');
    t.regex(rotated.stdout, /0 created, 1 rotated, 0 kept/);
    const after = await loadIdentity(join(s.out, '1', 'identity.toml'));
    t.notDeepEqual(after.accessKey, (await loadIdentity(join(s.out, '2', 'identity.toml'))).accessKey);
    t.not(await readFile(join(s.out, '1', 'identity.toml'), 'utf8'), before);
    t.deepEqual(after.accessKey, await deriveAccessKey(labelPassword(await readFile(join(s.out, '1', 'label.svg'), 'utf8')), '1'));
    t.deepEqual(
      (await readdir(s.out)).filter((n) => n.startsWith('.')),
      [],
      'nothing left aside',
    );
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('a device that fails part-way leaves nothing half-written; the others are whole; exit 1', async (t) => {
  const s = await station();
  try {
    await mkdir(s.out, { recursive: true });
    await writeFile(join(s.out, 'B'), 'in the way'); // a file where device B's directory must go
    const r = await batch(s, '--csv', await csvFile(s, 'serial\nA\nB\nC\n'));
    t.is(r.code, EXIT_FAILURE);
    t.regex(r.stdout, /2 created, 0 rotated, 0 kept \(already provisioned\), 1 failed/);
    t.regex(r.stderr, /B \(serial B\): /);
    const names = await readdir(s.out);
    t.deepEqual(
      names.filter((n) => n.startsWith('.')),
      [],
      'no staging directory left',
    );
    t.is(await readFile(join(s.out, 'B'), 'utf8'), 'in the way');
    for (const id of ['A', 'C']) t.truthy(await loadIdentity(join(s.out, id, 'identity.toml')));
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('leftovers of an interrupted run are cleaned: staging directories removed, a rotated-away device restored', async (t) => {
  const s = await station();
  try {
    t.is((await batch(s, '--range', '1-1')).code, EXIT_OK);
    const original = await readFile(join(s.out, '1', 'identity.toml'), 'utf8');
    await mkdir(join(s.out, '.2.tmp-abc123'));
    await writeFile(join(s.out, '.2.tmp-abc123', 'identity.toml'), 'half');
    await import('node:fs/promises').then((fs) => fs.rename(join(s.out, '1'), join(s.out, '.1.old-deadbeef')));
    const r = await batch(s, '--range', '1-2');
    t.is(r.code, EXIT_OK, r.stderr);
    t.regex(r.stdout, /1 created, 0 rotated, 1 kept/);
    t.is(await readFile(join(s.out, '1', 'identity.toml'), 'utf8'), original, 'restored, not re-provisioned');
    t.truthy(await loadIdentity(join(s.out, '2', 'identity.toml')));
    t.deepEqual(
      (await readdir(s.out)).filter((n) => n.startsWith('.')),
      [],
    );
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

async function csvFile(s: Station, text: string): Promise<string> {
  const f = join(s.dir, `list-${Math.random().toString(16).slice(2)}.csv`);
  await writeFile(f, text);
  return f;
}

test('the MAC scheme: ID from the MAC; bad rows are named by line; duplicate IDs refused before anything is written', async (t) => {
  const s = await station();
  try {
    const ok = await batch(
      s,
      '--id-scheme',
      'mac',
      '--prefix',
      'REC-',
      '--csv',
      await csvFile(s, '# line one is a comment\nserial,mac\nS1,00:1a:2b:3c:4d:5e\n"S2","00-1A-2B-3C-4D-5F"\n'),
    );
    t.is(ok.code, EXIT_OK, ok.stderr);
    t.deepEqual((await readdir(s.out)).sort(), ['REC-001A2B3C4D5E', 'REC-001A2B3C4D5F', 'manifest.csv']);
    const bad = await batch(s, '--id-scheme', 'mac', '--csv', await csvFile(s, 'serial,mac\nS3,00:1a:2b:3c:4d\n'));
    t.is(bad.code, EXIT_USAGE);
    t.regex(bad.stderr, /list-[0-9a-f]+\.csv:2: not a MAC address/);
    const dup = await batch(s, '--csv', await csvFile(s, 'serial\nX1\nX2\nX1\n'));
    t.is(dup.code, EXIT_USAGE);
    t.regex(dup.stderr, /both give equipment id X1/);
    t.false((await readdir(s.out)).includes('X2'), 'nothing written');
    t.is((await batch(s, '--range', '5-1')).code, EXIT_USAGE);
    t.is((await batch(s)).code, EXIT_USAGE, 'neither --csv nor --range');
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('the CA key never goes on a device: a --ca-cert file that carries a private key is refused', async (t) => {
  const s = await station();
  try {
    await writeFile(s.caFile, `${await readFile(s.caFile, 'utf8')}${s.caKey}`);
    const r = await batch(s, '--range', '1-1');
    t.is(r.code, EXIT_FAILURE);
    t.regex(r.stderr, /contains a private key/);
    t.false((await readdir(s.dir)).includes('devices'));
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('the real program with worker threads: labels carry a peerlink:// URI that names the device and its password', async (t) => {
  const s = await station();
  try {
    const r = await runNode(SCRIPT, [
      'batch',
      '--master-key',
      s.masterKeyFile,
      '--ca-cert',
      s.caFile,
      '--out-dir',
      s.out,
      '--range',
      '1-40',
      '--prefix',
      'W-',
      '--jobs',
      '2',
    ]);
    t.is(r.code, EXIT_OK, r.stderr);
    t.regex(r.stdout, /40 created/);
    const ids = (await readdir(s.out)).filter((n) => n.startsWith('W-'));
    t.is(ids.length, 40);
    const { renderLabelSvg } = await import('../../agent/pki/label.js');
    const svg = await readFile(join(s.out, 'W-07', 'label.svg'), 'utf8');
    const password = labelPassword(svg);
    const again = renderLabelSvg({ equipmentId: 'W-07', password, serial: '07' });
    t.is(again.svg, svg, 'the label is exactly the QR of this URI');
    t.like(parseConnectUri(again.uri), { equipmentId: 'W-07', password: password.replace(/-/g, '') });
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});
