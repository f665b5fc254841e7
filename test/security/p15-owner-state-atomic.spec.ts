/**
 * P15 (issue 19): the owner's state survives the agent dying at any instant. A process writing
 * the state file through the agent's own code (test/helpers/owner-state-writer.ts) is killed with
 * SIGKILL at random moments, again and again; after every kill the file must be a whole state
 * (parses, every key checks), no newer-than-acknowledged or torn version, the lock it held must
 * not block the next writer, and its leftover temporary file is cleaned up when the state is
 * next opened. The control run writes in place (not atomic) and must be caught at least once, so
 * this spec can fail.
 *
 * SIGKILL stops the process, not the machine: fsync of the file and the directory before and
 * after the rename is what carries this over to a power cut; that part is not simulated here.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openOwnerStore, OWNER_STATE_FILE_NAME, parseOwnerState } from '../../agent/device/owner-state.js';
import { tempDir } from '../helpers/flow.js';

const WRITER = fileURLToPath(new URL('../helpers/owner-state-writer.js', import.meta.url));
const KILLS = 40;

interface Outcome {
  readonly torn: number;
  readonly whole: number;
  readonly serials: number[];
}

async function killLoop(dir: string, unsafe: boolean): Promise<Outcome> {
  let torn = 0;
  let whole = 0;
  const serials: number[] = [];
  for (let i = 0; i < KILLS; i++) {
    const child = spawn(process.execPath, [WRITER, dir, ...(unsafe ? ['--unsafe'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    const started = await new Promise<boolean>((resolve) => {
      child.stdout.once('data', () => resolve(true));
      child.once('exit', () => resolve(false));
    });
    if (!started) throw new Error('the writer died before it started (could not open the state)');
    await new Promise((r) => setTimeout(r, 5 + Math.random() * 60));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    let text: string;
    try {
      text = await readFile(join(dir, OWNER_STATE_FILE_NAME), 'utf8');
    } catch {
      continue; // killed before its first write
    }
    try {
      const s = parseOwnerState(text, OWNER_STATE_FILE_NAME);
      whole++;
      serials.push(s.serial);
    } catch {
      torn++;
      if (unsafe) break; // caught; the in-place writer would not get further
    }
  }
  return { torn, whole, serials };
}

test.serial(
  'the owner state file is whole after each of many SIGKILLs mid-write; the lock and temp files do not outlive the writer',
  async (t) => {
    const dir = await tempDir(t, 'peerlink-owner-atomic-');
    const o = await killLoop(dir, false);
    t.log(`${KILLS} kills: ${o.whole} whole states seen, ${o.torn} torn; last serial ${o.serials.at(-1)}`);
    t.is(o.torn, 0, 'never a torn state file');
    t.true(o.whole >= KILLS / 2, 'the writer got writes done between kills (the test exercised something)');
    for (let i = 1; i < o.serials.length; i++) t.true(o.serials[i]! >= o.serials[i - 1]!, 'the state never goes back');
    // The next writer takes over the dead one's lock and clears its temporary files.
    const store = openOwnerStore({ stateDir: dir });
    await store.update((s) => ({ ...s, clients: [] }));
    const left = (await readdir(dir)).filter((f) => f !== OWNER_STATE_FILE_NAME);
    t.deepEqual(left, [], 'no lock or temporary file left behind');
  },
);

test.serial('control: a writer that writes in place is caught leaving a torn file', async (t) => {
  const dir = await tempDir(t, 'peerlink-owner-torn-');
  const o = await killLoop(dir, true);
  t.log(`${KILLS} kills of the in-place writer: ${o.torn} torn files`);
  t.true(o.torn > 0, 'the kill loop detects a non-atomic writer');
});

test.serial('an empty lock, left by a writer killed between creating it and writing its pid, is taken over', async (t) => {
  const dir = await tempDir(t, 'peerlink-owner-emptylock-');
  const store = openOwnerStore({ stateDir: dir });
  await store.update((s) => ({ ...s, clients: [] }));
  const lock = join(dir, 'owner-state.lock');
  await writeFile(lock, '', { mode: 0o600 });
  const old = new Date(Date.now() - 5_000);
  await utimes(lock, old, old);
  await store.update((s) => ({ ...s, clients: [] }));
  t.deepEqual(
    (await readdir(dir)).filter((f) => f !== OWNER_STATE_FILE_NAME),
    [],
    'the empty lock was taken over and released',
  );
});
