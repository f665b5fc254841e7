/**
 * P7b: every file that holds a secret is refused, with a code and naming the file and its mode,
 * when group or others may read it (as ssh does for a private key): the client's password file,
 * the server's TLS private key, the device identity. And the mode that is checked is the mode of
 * the file whose bytes are read (fstat on the open descriptor), so swapping the file between a
 * check and the read cannot slip in a file others can read.
 */
import test from 'ava';
import { chmod, rename, writeFile } from 'node:fs/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { EXIT_CODES } from '../../agent/cli/exit-codes.js';
import { ErrorCodes, type ConfigError } from '../../agent/common/errors.js';
import { writeFileAtomic } from '../../agent/common/files.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { createDeviceIdentity, writeDeviceIdentity } from '../../agent/pki/device.js';
import { createRegistrationMasterKey } from '../../agent/pki/master-key.js';
import { checkServerSettings, loadServerSecrets } from '../../agent/server/settings.js';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { runNode } from '../helpers/run-process.js';
import { createServerPki, tempDir } from '../helpers/harness.js';

const LOOSE_MODES = [0o644, 0o640, 0o604, 0o660];

test('P7b: the client refuses a password file group or others can read, with SECRET_FILE_PERMISSIONS, before contacting anyone', async (t) => {
  const dir = await tempDir(t, 'peerlink-p7b-');
  const setup = await createLoopbackSetup({ dir, services: { echo: '127.0.0.1:9' } });
  for (const mode of LOOSE_MODES) {
    await chmod(setup.passwordFile, mode);
    // No server listens on port 9: a client that got past the file would fail with another code.
    const r = await runNode(PROGRAMS.client, [
      'connect',
      setup.equipmentId,
      '--server',
      '127.0.0.1:9',
      '--ca',
      setup.caFile,
      '--password-file',
      setup.passwordFile,
      '--service',
      'echo',
      '--stdio',
    ]);
    t.is(r.code, EXIT_CODES[ErrorCodes.SECRET_FILE_PERMISSIONS] ?? -1, `${mode.toString(8)}: ${r.stderr}`);
    t.true(r.stderr.includes(`[${ErrorCodes.SECRET_FILE_PERMISSIONS}]`), r.stderr);
    t.true(r.stderr.includes(setup.passwordFile) && r.stderr.includes(mode.toString(8)), 'stderr names the file and its mode');
  }
  // Control: at 0600 it gets past the file (and fails later, at the absent server).
  await chmod(setup.passwordFile, 0o600);
  const ok = await runNode(PROGRAMS.client, [
    'connect',
    setup.equipmentId,
    '--server',
    '127.0.0.1:9',
    '--ca',
    setup.caFile,
    '--password-file',
    setup.passwordFile,
    '--service',
    'echo',
    '--stdio',
  ]);
  t.false(ok.stderr.includes(ErrorCodes.SECRET_FILE_PERMISSIONS), ok.stderr);
  t.not(ok.code, 0);
});

test('P7b: the server refuses a TLS private key group or others can read, with SECRET_FILE_PERMISSIONS naming the file', async (t) => {
  const dir = await tempDir(t, 'peerlink-p7b-');
  const pki = createServerPki();
  await writeFile(join(dir, 'server.pem'), pki.certPem, { mode: 0o644 });
  await writeFileAtomic(join(dir, 'server.key'), pki.keyPem);
  await writeFileAtomic(join(dir, 'master.key'), createRegistrationMasterKey().toString('base64'));
  const settings = checkServerSettings(
    { registration_master_key_file: 'master.key', tls: { cert_file: 'server.pem', key_file: 'server.key' } },
    join(dir, 'server.toml'),
  );
  t.is((await loadServerSecrets(settings)).keyPem, pki.keyPem, 'control: 0600 is read');
  for (const mode of LOOSE_MODES) {
    await chmod(join(dir, 'server.key'), mode);
    const err = await t.throwsAsync(loadServerSecrets(settings));
    t.is((err as ConfigError).code, ErrorCodes.SECRET_FILE_PERMISSIONS, mode.toString(8));
    t.true(
      (err as ConfigError).problems.some((p) => p.includes(join(dir, 'server.key')) && p.includes(mode.toString(8))),
      'names the file and its mode',
    );
  }
});

test.serial(
  'P7b: the identity whose mode was checked is the identity read (a swap after the check cannot slip in a 0644 file)',
  async (t) => {
    const dir = await tempDir(t, 'peerlink-p7b-');
    const masterKey = createRegistrationMasterKey();
    const pki = createServerPki();
    const file = join(dir, 'identity.toml');
    const good = await createDeviceIdentity({ equipmentId: 'GOOD-0600', masterKey, caCertPem: pki.caPem });
    const bad = await createDeviceIdentity({ equipmentId: 'SWAPPED-0644', masterKey, caCertPem: pki.caPem });
    await writeDeviceIdentity(file, good.identity);
    const swapped = join(dir, 'swapped.toml');
    await writeDeviceIdentity(swapped, bad.identity);
    await chmod(swapped, 0o644);

    // The attacker's move, right after the loader's first look at the file (a stat, or the open).
    const fsp = createRequire(import.meta.url)('node:fs/promises') as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const original = { stat: fsp.stat!, open: fsp.open! };
    let swappedIn = false;
    const afterFirstLook =
      (name: 'stat' | 'open') =>
      async (...args: unknown[]) => {
        const r = await original[name](...args);
        if (!swappedIn && args[0] === file) {
          swappedIn = true;
          await rename(swapped, file);
        }
        return r;
      };
    fsp.stat = afterFirstLook('stat');
    fsp.open = afterFirstLook('open');
    syncBuiltinESMExports();
    t.teardown(() => {
      fsp.stat = original.stat;
      fsp.open = original.open;
      syncBuiltinESMExports();
    });

    let loaded: string;
    try {
      loaded = (await loadIdentity(file)).equipmentId;
    } catch (err) {
      loaded = (err as { code?: string }).code ?? String(err);
    }
    t.true(swappedIn, 'the swap happened during the load');
    // Either the checked file (0600) was read, or the swapped one was refused: never read unchecked.
    t.true(loaded === 'GOOD-0600' || loaded === ErrorCodes.IDENTITY_PERMISSIONS, `loaded ${loaded}`);
  },
);
