/**
 * The replay mark on disk: read at start, only ever raised, covering every accepted timestamp before
 * the caller goes on; written ahead by REPLAY_MARK_LEASE_MS, so a burst of requests writes it once.
 */
import test from 'ava';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../agent/common/logger.js';
import { openReplayMark, REPLAY_MARK_FILE_NAME, REPLAY_MARK_FORMAT, REPLAY_MARK_LEASE_MS } from '../../agent/device/replay-mark.js';

const LEASE = REPLAY_MARK_LEASE_MS;

async function dir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'peerlink-mark-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}
const onDisk = async (d: string): Promise<number> =>
  (JSON.parse(await readFile(join(d, REPLAY_MARK_FILE_NAME), 'utf8')) as { acceptedUpToMs: number }).acceptedUpToMs;

test('a first start has no barrier; what was accepted, plus the lease, is the next start barrier', async (t) => {
  const d = await dir(t);
  const a = await openReplayMark({ stateDir: d, logger: silentLogger() });
  t.is(a.barrierMs, 0);
  await a.accept(5000);
  t.is(await onDisk(d), 5000 + LEASE, 'on disk, written ahead, once accept resolves');
  t.is((await stat(join(d, REPLAY_MARK_FILE_NAME))).mode & 0o777, 0o600);
  const b = await openReplayMark({ stateDir: d, logger: silentLogger() });
  t.is(b.barrierMs, 5000 + LEASE, 'a request made within the lease after the last one served is refused after a restart');
  t.true(b.persistent);
});

test('the mark only rises, also when accepts overlap', async (t) => {
  const d = await dir(t);
  const m = await openReplayMark({ stateDir: d, logger: silentLogger() });
  await Promise.all([m.accept(3000), m.accept(9000), m.accept(4000), m.accept(8000)]);
  t.is(await onDisk(d), 9000 + LEASE);
  await m.accept(100);
  await m.flush();
  t.is(await onDisk(d), 9000 + LEASE);
});

test('a corrupt mark file is reported (not persistent) and replaced by the next accept', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, REPLAY_MARK_FILE_NAME), '{"format":"other"}');
  const m = await openReplayMark({ stateDir: d, logger: silentLogger() });
  t.is(m.barrierMs, 0);
  t.false(m.persistent);
  await m.accept(7000);
  t.true(m.persistent);
  t.deepEqual(JSON.parse(await readFile(join(d, REPLAY_MARK_FILE_NAME), 'utf8')), {
    format: REPLAY_MARK_FORMAT,
    acceptedUpToMs: 7000 + LEASE,
  });
});

test('a state directory that cannot be made: accept still resolves, persistent is false', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, 'file'), 'x');
  const m = await openReplayMark({ stateDir: join(d, 'file', 'state'), logger: silentLogger() });
  await m.accept(1000);
  t.false(m.persistent);
});

test('a burst of requests within half the lease writes the file once', async (t) => {
  const d = await dir(t);
  const m = await openReplayMark({ stateDir: d, logger: silentLogger() });
  await m.accept(10_000);
  t.is(m.writes, 1);
  for (let ts = 10_001; ts <= 10_000 + LEASE / 2; ts += 7) await m.accept(ts);
  await m.flush();
  t.is(m.writes, 1, 'no write for timestamps the mark written ahead covers');
  t.is(await onDisk(d), 10_000 + LEASE);
});

test('past half the lease the mark is renewed in the background; past the lease the request waits for a write', async (t) => {
  const d = await dir(t);
  const m = await openReplayMark({ stateDir: d, logger: silentLogger() });
  await m.accept(10_000);
  const late = 10_000 + LEASE / 2 + 1;
  await m.accept(late);
  await m.flush();
  t.is(m.writes, 2, 'renewed');
  t.is(await onDisk(d), late + LEASE);
  const beyond = late + 5 * LEASE;
  await m.accept(beyond);
  t.is(m.writes, 3);
  t.true((await onDisk(d)) >= beyond, 'on disk once accept resolves');
});

test('P12: whatever the order and overlap, every accepted timestamp is at or below the mark on disk when accept resolves', async (t) => {
  const d = await dir(t);
  const m = await openReplayMark({ stateDir: d, logger: silentLogger() });
  let ts = 1_000_000;
  let seed = 7;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let round = 0; round < 40; round++) {
    const batch = Array.from({ length: 1 + rnd(5) }, () => (ts += rnd(LEASE)));
    await Promise.all(
      batch.map(async (x) => {
        await m.accept(x);
        t.true((await onDisk(d)) >= x, `${x} covered`);
      }),
    );
  }
  t.true(m.writes < 40 * 3, `fewer writes than requests (${m.writes})`);
});
