/**
 * P12: a request the device accepted is never accepted again, also after the agent restarts.
 * The replay cache is in memory and the server sets the device's idea of time (HELLO), so after a
 * restart a malicious server could replay a captured request as fresh; the persisted replay mark
 * (agent/device/replay-mark.ts) refuses it. Here the replay comes within the freshness window, so
 * even an honest server's clock lets it through without the mark. The mark is written ahead of the
 * accepted timestamp (REPLAY_MARK_LEASE_MS), so a request accepted without a write of its own is
 * covered too.
 */
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgent } from '../../agent/device/agent.js';
import { REPLAY_MARK_FILE_NAME } from '../../agent/device/replay-mark.js';
import type { AgentSettings } from '../../agent/device/settings.js';
import { Status } from '../../agent/protocol/status.js';
import { acceptor, request, world, type World } from '../helpers/fake-client.js';
import { Scope, sleep, waitUntil } from '../helpers/harness.js';

const QUIET_MS = 300;
const scope = new Scope();
test.after.always(() => scope.run());

const markOnDisk = async (settings: AgentSettings): Promise<number> =>
  (JSON.parse(await readFile(join(settings.stateDir, REPLAY_MARK_FILE_NAME), 'utf8')) as { acceptedUpToMs: number }).acceptedUpToMs;

/** Until the server's clock (this machine's) is past the mark: a new request is newer than it. */
async function pastTheMark(settings: AgentSettings): Promise<void> {
  await sleep(Math.max(0, (await markOnDisk(settings)) - Date.now() + 20));
}

/** Stop the world's agent and start a new one on the same settings and identity: a restart. */
async function restartAgent(w: World, t: { teardown(fn: () => unknown): void }): Promise<void> {
  await w.agent.stop();
  const again = createAgent({ identity: w.identity, settings: w.settings });
  await again.start();
  t.teardown(() => again.stop());
  await waitUntil(() => again.status().state === 'registered', 'the restarted agent to register', 5000);
}

test.serial('P12: a request accepted before a restart is refused after it (REQUEST_REPLAYED), and no dial happens', async (t) => {
  const w = await world(scope);
  const acc = await acceptor(t);
  const first = await request(w, acc, {});
  t.is(first.status, Status.OK);
  await waitUntil(() => acc.dials() === 1, 'the device to dial', 3000);
  t.true((await markOnDisk(w.settings)) > 0, 'the mark is on disk before the device dials');

  await restartAgent(w, t);
  const replay = await request(w, acc, first.sealed);
  t.is(replay.status, Status.REQUEST_REPLAYED);
  await sleep(QUIET_MS);
  t.is(acc.dials(), 1, 'the replayed request made the device dial nothing');

  // A request within the lease after the last one served is refused too (the mark is written ahead): wait it out.
  await pastTheMark(w.settings);
  const fresh = await request(w, acc, {});
  t.is(fresh.status, Status.OK, 'a new request after the restart is served');
  await waitUntil(() => acc.dials() === 2, 'the device to dial the new request', 3000);
});

test.serial('P12: requests accepted within the lease (no write of their own) are refused after a restart too', async (t) => {
  const w = await world(scope);
  const acc = await acceptor(t);
  const first = await request(w, acc, {});
  t.is(first.status, Status.OK);
  const mark = await markOnDisk(w.settings);
  // Right after: their timestamps are below the mark the first one wrote ahead.
  const more = [await request(w, acc, {}), await request(w, acc, {})];
  t.deepEqual(
    more.map((r) => r.status),
    [Status.OK, Status.OK],
  );
  await waitUntil(() => acc.dials() === 3, 'the device to dial all three', 3000);
  t.true((await markOnDisk(w.settings)) >= mark);

  await restartAgent(w, t);
  for (const r of [first, ...more]) t.is((await request(w, acc, r.sealed)).status, Status.REQUEST_REPLAYED);
  await sleep(QUIET_MS);
  t.is(acc.dials(), 3, 'no replayed request made the device dial');
});

test.serial('P12: a state directory that cannot be written does not stop the device serving', async (t) => {
  // A regular file where the directory's parent should be: unusable for root too.
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-p12-'));
  scope.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'not-a-directory'), 'x');
  const w = await world(scope, { stateDir: join(dir, 'not-a-directory', 'state') });
  const acc = await acceptor(t);
  const r = await request(w, acc, {});
  t.is(r.status, Status.OK);
  await waitUntil(() => acc.dials() === 1, 'the device to dial', 3000);
});
