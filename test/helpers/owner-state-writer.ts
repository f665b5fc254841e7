/**
 * A process that changes the owner state file as fast as it can, through the agent's own code
 * (openOwnerStore().update), for the kill-mid-write spec. Prints "ready" once, then loops. Every
 * state has a different size (1..32 clients), so a torn file cannot pass for a whole one.
 *   node owner-state-writer.js <state dir> [--unsafe]
 * --unsafe writes in place, in 256-byte pieces (no temp file, no rename): the spec's control, to
 * show that it catches a writer that is not atomic.
 */
import { openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  EMPTY_OWNER_STATE,
  formatOwnerState,
  openOwnerStore,
  OWNER_STATE_FILE_NAME,
  type OwnerState,
  type PairedClient,
} from '../../agent/device/owner-state.js';

const [dir, mode] = process.argv.slice(2);
if (!dir) throw new Error('usage: owner-state-writer <state dir> [--unsafe]');

function next(s: OwnerState, i: number): OwnerState {
  const n = (i % 32) + 1;
  const clients: PairedClient[] = Array.from({ length: n }, (_, k) => ({
    id: randomBytes(16).toString('hex'),
    name: `client ${k} of ${n}, write ${i}`,
    key: randomBytes(32),
    createdMs: Date.now(),
    lastUsedMs: Date.now(),
  }));
  return { ...s, clients, revokedKeys: clients.slice(0, n % 5).map((c) => c.key) };
}

let i = 0;
process.stdout.write('ready\n');
if (mode === '--unsafe') {
  let s: OwnerState = EMPTY_OWNER_STATE;
  for (;;) {
    s = { ...next(s, i++), serial: s.serial + 1 };
    const text = Buffer.from(formatOwnerState(s));
    const fd = openSync(join(dir, OWNER_STATE_FILE_NAME), 'w', 0o600);
    ftruncateSync(fd, 0);
    for (let off = 0; off < text.length; off += 256) writeSync(fd, text, off, Math.min(256, text.length - off));
    closeSync(fd);
  }
} else {
  const store = openOwnerStore({ stateDir: dir });
  for (;;) await store.update((s) => next(s, i++));
}
