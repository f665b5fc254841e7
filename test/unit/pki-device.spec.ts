import test from 'ava';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ErrorCodes } from '../../agent/common/errors.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { formatIdentity, parseIdentity } from '../../agent/protocol/identity-file.js';
import { deriveAccessKey, deriveRegistrationKey, normalizePassword } from '../../agent/protocol/keys.js';
import { createCa } from '../../agent/pki/ca.js';
import { createDeviceIdentity, writeDeviceIdentity } from '../../agent/pki/device.js';
import {
  MASTER_KEY_BYTES,
  createRegistrationMasterKey,
  formatMasterKey,
  loadMasterKey,
  parseMasterKey,
} from '../../agent/pki/master-key.js';
import { PASSWORD_ALPHABET, PASSWORD_ENTROPY_BITS, generatePassword } from '../../agent/pki/password.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';

const ca = createCa();
const PASSWORD_FORMAT = new RegExp(`^[${PASSWORD_ALPHABET}]{4}(-[${PASSWORD_ALPHABET}]{4}){4}$`);

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-pki-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// --- password ---

test('password alphabet: 30 unambiguous characters, entropy ~98 bits', (t) => {
  t.is(PASSWORD_ALPHABET, '23456789ABCDEFGHJKMNPQRSTVWXYZ');
  t.is(new Set(PASSWORD_ALPHABET).size, 30);
  for (const c of '01ILOU') t.false(PASSWORD_ALPHABET.includes(c), c);
  t.is(PASSWORD_ENTROPY_BITS, 98);
});

test('generatePassword: format, alphabet coverage and uniqueness over 1000 draws', (t) => {
  const seen = new Set<string>();
  const counts = new Map<string, number>();
  for (let i = 0; i < 1000; i++) {
    const p = generatePassword();
    t.regex(p, PASSWORD_FORMAT);
    seen.add(p);
    for (const c of p.replace(/-/g, '')) counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  t.is(seen.size, 1000);
  // 20,000 characters: each of the 30 is expected ~667 times; a missing or grossly rare one means a bug.
  t.is(counts.size, PASSWORD_ALPHABET.length);
  for (const [c, n] of counts) t.true(n > 450 && n < 900, `${c} drawn ${n} times`);
});

test('generatePassword: survives normalisation and case-insensitive retyping', (t) => {
  const p = generatePassword();
  t.is(normalizePassword(p), p.replace(/-/g, ''));
  t.is(normalizePassword(p.toLowerCase().replace(/-/g, ' ')), normalizePassword(p));
});

// --- master key ---

test('master key: 32 random bytes, base64 file format round-trips', (t) => {
  const key = createRegistrationMasterKey();
  t.is(key.length, MASTER_KEY_BYTES);
  t.notDeepEqual(key, createRegistrationMasterKey());
  const text = formatMasterKey(key);
  t.regex(text, /^[A-Za-z0-9+/]{43}=\n$/);
  t.deepEqual(parseMasterKey(text, 'm.key'), key);
  t.deepEqual(parseMasterKey(`  ${text.trim()}\r\n`, 'm.key'), key);
});

test('parseMasterKey: anything but base64 of exactly 32 bytes is a ConfigError naming the file', (t) => {
  const bad = [
    '',
    Buffer.alloc(31).toString('base64'),
    Buffer.alloc(33).toString('base64'),
    `${Buffer.alloc(32, 1).toString('base64')}!!`,
    'not base64 at all',
    `${Buffer.alloc(32).toString('base64')}\n${Buffer.alloc(32).toString('base64')}`,
  ];
  for (const text of bad) {
    const err = t.throws(() => parseMasterKey(text, '/etc/peerlink/master.key'), {
      instanceOf: ConfigError,
      code: ErrorCodes.CONFIG_INVALID,
    });
    t.true(err?.problems.every((p) => p.startsWith('/etc/peerlink/master.key: ')));
  }
});

test('loadMasterKey: reads a 0600 file, refuses a group/other-readable one and a missing one', async (t) => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'master.key');
    const key = createRegistrationMasterKey();
    await writeFile(file, formatMasterKey(key), { mode: 0o600 });
    await chmod(file, 0o600);
    t.deepEqual(await loadMasterKey(file), key);
    await chmod(file, 0o640);
    await t.throwsAsync(loadMasterKey(file), { instanceOf: ConfigError, code: ErrorCodes.CONFIG_INVALID });
    await t.throwsAsync(loadMasterKey(join(dir, 'missing.key')), { instanceOf: ConfigError, code: ErrorCodes.CONFIG_INVALID });
  });
});

// --- device identity ---

test('createDeviceIdentity: keys derive from the master key and the password, which is not stored', async (t) => {
  const masterKey = createRegistrationMasterKey();
  const { identity, password } = await createDeviceIdentity({ equipmentId: 'dev-001.a_B', masterKey, caCertPem: ca.certPem });
  t.regex(password, PASSWORD_FORMAT);
  t.is(identity.equipmentId, 'dev-001.a_B');
  t.deepEqual(identity.registrationKey, deriveRegistrationKey(masterKey, 'dev-001.a_B'));
  t.deepEqual(identity.accessKey, await deriveAccessKey(password, 'dev-001.a_B'));
  t.deepEqual(Object.keys(identity).sort(), ['accessKey', 'caCert', 'equipmentId', 'registrationKey']);

  const text = formatIdentity(identity);
  t.false(text.includes(password));
  t.false(text.includes(normalizePassword(password)));
  t.false(text.includes(masterKey.toString('base64')));
  t.deepEqual(parseIdentity(text, 'identity.toml'), identity);
});

test('createDeviceIdentity: a given password is used (any case, any grouping)', async (t) => {
  const masterKey = createRegistrationMasterKey();
  const given = generatePassword();
  const a = await createDeviceIdentity({ equipmentId: 'dev1', masterKey, caCertPem: ca.certPem, password: given });
  const b = await createDeviceIdentity({
    equipmentId: 'dev1',
    masterKey,
    caCertPem: ca.certPem,
    password: given.toLowerCase().replace(/-/g, ''),
  });
  t.is(a.password, given);
  t.deepEqual(a.identity.accessKey, await deriveAccessKey(given, 'dev1'));
  t.deepEqual(a.identity.accessKey, b.identity.accessKey);
  // The registration key does not depend on the password; different IDs give different keys.
  t.deepEqual(a.identity.registrationKey, b.identity.registrationKey);
  const other = await createDeviceIdentity({ equipmentId: 'dev2', masterKey, caCertPem: ca.certPem, password: given });
  t.notDeepEqual(other.identity.registrationKey, a.identity.registrationKey);
  t.notDeepEqual(other.identity.accessKey, a.identity.accessKey);
});

test('createDeviceIdentity: rejects bad input with OPTIONS_INVALID', async (t) => {
  const masterKey = createRegistrationMasterKey();
  const server = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost'] });
  const good = { equipmentId: 'dev1', masterKey, caCertPem: ca.certPem };
  const bad = [
    { ...good, equipmentId: '' },
    { ...good, equipmentId: 'has space' },
    { ...good, equipmentId: 'x'.repeat(65) },
    { ...good, equipmentId: 'dev/1' },
    { ...good, masterKey: masterKey.subarray(0, 31) },
    { ...good, caCertPem: 'garbage' },
    { ...good, caCertPem: server.certPem }, // a leaf, not a CA
    { ...good, password: ' - ' },
  ];
  for (const options of bad) {
    await t.throwsAsync(createDeviceIdentity(options), { code: ErrorCodes.OPTIONS_INVALID });
  }
});

test('writeDeviceIdentity: mode 0600, replaces atomically, loadIdentity accepts it', async (t) => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'identity.toml');
    await writeFile(file, 'old', { mode: 0o644 });
    const { identity } = await createDeviceIdentity({
      equipmentId: 'dev1',
      masterKey: createRegistrationMasterKey(),
      caCertPem: ca.certPem,
    });
    await writeDeviceIdentity(file, identity);
    t.is((await stat(file)).mode & 0o777, 0o600);
    t.is(await readFile(file, 'utf8'), formatIdentity(identity));
    t.deepEqual(await loadIdentity(file), identity);
  });
});
