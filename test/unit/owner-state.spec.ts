/** The owner state file's format, its ownership and its lock (agent/device/owner-state.ts, issue 19). */
import test from 'ava';
import { chown, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openOwnerStore, OWNER_STATE_FILE_NAME, parseOwnerState } from '../../agent/device/owner-state.js';

async function dir(t: { teardown(f: () => unknown): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'peerlink-owner-unit-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('a bad state file is refused naming the file and each bad field', (t) => {
  const text = JSON.stringify({
    format: 'peerlink-owner-state/1',
    serial: 1,
    password_key: 'short',
    clients: [{ id: 'XYZ', name: '', key: 'x' }],
    revoked_keys: [],
  });
  const err = t.throws(() => parseOwnerState(text, 'owner-state.json'));
  t.regex(err.message, /owner-state\.json: password_key: expected base64 of 32 bytes/);
  t.regex(err.message, /clients\[0\]\.id/);
  t.throws(() => parseOwnerState('{"format":', 'owner-state.json'), { message: /not valid JSON/ });
});

test('a lock left by a writer that died is taken over; the state round-trips', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, 'owner-state.lock'), '999999999');
  const store = openOwnerStore({ stateDir: d });
  const key = randomBytes(32);
  const s = await store.update((x) => ({ ...x, clients: [{ id: 'ab'.repeat(16), name: 'phone', key, createdMs: 1, lastUsedMs: 2 }] }));
  t.is(s.serial, 1);
  t.true(openOwnerStore({ stateDir: d }).current().clients[0]!.key.equals(key));
  t.is((await stat(join(d, OWNER_STATE_FILE_NAME))).mode & 0o777, 0o600);
});

const asRoot = process.getuid?.() === 0 ? test : test.skip;
asRoot("written by root (a technician), the file belongs to the state directory's owner (the agent)", async (t) => {
  const d = await dir(t);
  await chown(d, 65534, 65534);
  await openOwnerStore({ stateDir: d }).update((x) => ({ ...x, clients: [], passwordKey: randomBytes(32) }));
  const st = await stat(join(d, OWNER_STATE_FILE_NAME));
  t.is(st.uid, 65534);
  t.is(st.gid, 65534);
});
