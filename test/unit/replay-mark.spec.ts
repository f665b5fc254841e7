/** The replay mark on disk: read at start, only ever raised, written before the caller goes on. */
import test from 'ava';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../agent/common/logger.js';
import { openReplayMark, REPLAY_MARK_FILE_NAME, REPLAY_MARK_FORMAT } from '../../agent/device/replay-mark.js';

async function dir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'peerlink-mark-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}
const onDisk = async (d: string): Promise<number> =>
  (JSON.parse(await readFile(join(d, REPLAY_MARK_FILE_NAME), 'utf8')) as { acceptedUpToMs: number }).acceptedUpToMs;

test('a first start has no barrier; what was accepted is the next start barrier', async (t) => {
  const d = await dir(t);
  const a = await openReplayMark({ stateDir: d, logger: silentLogger() });
  t.is(a.barrierMs, 0);
  await a.accept(5000);
  t.is(await onDisk(d), 5000, 'on disk once accept resolves');
  t.is((await stat(join(d, REPLAY_MARK_FILE_NAME))).mode & 0o777, 0o600);
  const b = await openReplayMark({ stateDir: d, logger: silentLogger() });
  t.is(b.barrierMs, 5000);
  t.true(b.persistent);
});

test('the mark only rises, also when accepts overlap', async (t) => {
  const d = await dir(t);
  const m = await openReplayMark({ stateDir: d, logger: silentLogger() });
  await Promise.all([m.accept(3000), m.accept(9000), m.accept(4000), m.accept(8000)]);
  t.is(await onDisk(d), 9000);
  await m.accept(100);
  t.is(await onDisk(d), 9000);
});

test('a corrupt mark file is reported (not persistent) and replaced by the next accept', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, REPLAY_MARK_FILE_NAME), '{"format":"other"}');
  const m = await openReplayMark({ stateDir: d, logger: silentLogger() });
  t.is(m.barrierMs, 0);
  t.false(m.persistent);
  await m.accept(7000);
  t.true(m.persistent);
  t.deepEqual(JSON.parse(await readFile(join(d, REPLAY_MARK_FILE_NAME), 'utf8')), { format: REPLAY_MARK_FORMAT, acceptedUpToMs: 7000 });
});

test('a state directory that cannot be made: accept still resolves, persistent is false', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, 'file'), 'x');
  const m = await openReplayMark({ stateDir: join(d, 'file', 'state'), logger: silentLogger() });
  await m.accept(1000);
  t.false(m.persistent);
});
