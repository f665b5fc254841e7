/**
 * The Redis backend on a real Redis Cluster (three primaries, one replica each, from the Debian
 * package): newest registration wins across nodes, messages between nodes on sharded pub/sub,
 * the takeover rule that keeps P1 with write on change, fleet-wide limits in one bucket, and a
 * primary killed: its replica takes over and writes, lookups and messages work again by themselves.
 */
import { spawnSync } from 'node:child_process';
import test from 'ava';
import { redisAvailable, redisSerialTest } from '../helpers/redis-test.js';
import { createRedisRegistry, type NodeMessage, type RedisRegistry } from '../../agent/server/redis-registry.js';
import { silentLogger } from '../../agent/common/logger.js';
import { startRedisCluster, type RedisCluster } from '../../scripts/lib/redis-cluster.js';

let cluster: RedisCluster;
const open: RedisRegistry[] = [];
test.before(async () => {
  if (redisAvailable) cluster = await startRedisCluster();
});
test.after.always(async () => {
  await Promise.all(open.map((r) => r.stop()));
  await cluster?.stop();
});

async function node(nodeId: string, keyPrefix: string, seed = 0, refreshAfterMs = 60_000): Promise<RedisRegistry> {
  // Each node is given one different seed: it learns the rest of the cluster from it.
  const r = createRedisRegistry({
    clusterNodes: [cluster.seeds[seed]!],
    nodeId,
    keyPrefix,
    forgetAfterMs: 600_000,
    refreshAfterMs,
    logger: silentLogger(),
  });
  open.push(r);
  await r.start();
  return r;
}

const entry = (ts: number, port = 4000, seen = Date.now()) => ({ address: '202.204.16.13', port, lastSeenMs: seen, lastTimestampMs: ts });

async function until(what: string, ok: () => Promise<boolean> | boolean, ms = 15_000): Promise<number> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

const attached = (n: number): NodeMessage => ({ kind: 'attached', requestId: n.toString(16).padStart(32, '0'), byNode: 'node-a' });

redisSerialTest('a cluster: newest registration wins across nodes, keys spread over the shards, messages on sharded pub/sub', async (t) => {
  const a = await node('node-a', 'c1:', 0);
  const b = await node('node-b', 'c1:', 1);
  t.is(a.mode, 'cluster');
  t.deepEqual(await a.record('TV-1', entry(1000)), { outcome: 'accepted', moved: true, previous: undefined });
  t.deepEqual(await b.record('TV-1', entry(1000, 5000)), { outcome: 'replayed' });
  const shards = new Set<number>();
  for (let i = 0; i < 30; i++) {
    await a.record(`SPREAD-${i}`, entry(1));
    shards.add(await cluster.primaryFor(`c1:{d:SPREAD-${i}}`));
  }
  t.is(shards.size, 3, 'devices are spread over every primary');
  const got: NodeMessage[] = [];
  b.onMessage((m) => got.push(m));
  await until('b subscribed', async () => (await a.send('node-b', attached(0))) === 1);
  await until('message delivered', () => got.length > 0);
  t.deepEqual(got[0], attached(0));
  t.is(await a.send('node-gone', attached(1)), 0, 'nobody listens for a node that is not running');
});

redisSerialTest(
  'write on change keeps P1 across nodes: another node cannot take a device its holder keeps fresh with a timestamp it may have accepted unwritten',
  async (t) => {
    const refresh = 10_000;
    const a = await node('node-a', 'c2:', 0, refresh);
    const b = await node('node-b', 'c2:', 2, refresh);
    const now = Date.now();
    t.like(await a.record('TV-2', entry(now, 4000, now)), { outcome: 'accepted' });
    // node-a skips writes for up to `refresh`: a registration it accepted meanwhile (timestamp
    // now + 5 s) is replayed at node-b. Newer than the shared entry, but node-b must not take it.
    t.deepEqual(await b.record('TV-2', { ...entry(now + 5000, 4000, now), node: 'node-b' }), { outcome: 'held' });
    t.like(await a.lookup('TV-2'), { node: 'node-a', lastTimestampMs: now }, 'untouched');
    // Newer than anything node-a can have accepted unwritten: a genuine move.
    t.like(await b.record('TV-2', { ...entry(now + refresh + 1, 5000, now), node: 'node-b' }), { outcome: 'accepted', moved: true });
    t.like(await a.lookup('TV-2'), { node: 'node-b', port: 5000 });
    // The holder stopped refreshing (its entry is due): any newer registration moves the device.
    const old = now - refresh - 1;
    await a.record('TV-3', { ...entry(old, 4000, old), node: 'node-a' });
    t.like(await b.record('TV-3', { ...entry(old + 1, 5000, now), node: 'node-b' }), { outcome: 'accepted', moved: true });
  },
);

redisSerialTest('a write batch: one script call per primary carries its devices, each decided as if alone (P1)', async (t) => {
  const a = await node('node-a', 'c5:', 0);
  const b = await node('node-b', 'c5:', 1);
  const calls = (): number =>
    cluster.nodes
      .filter((n) => n.running)
      .reduce((sum, n) => {
        const stats = spawnSync('redis-cli', ['-p', String(n.port), 'info', 'commandstats'], { encoding: 'utf8' }).stdout;
        return sum + [...stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
      }, 0);
  const ids = Array.from({ length: 60 }, (_, i) => `BATCH-${i}`);
  const shards = new Set(await Promise.all(ids.map((id) => cluster.primaryFor(`c5:{d:${id}}`))));
  t.is(shards.size, 3, 'the devices are on every primary');
  const before = calls();
  const now = Date.now();
  const first = await Promise.all(ids.map((id) => a.record(id, entry(now, 4000, now))));
  t.true(
    first.every((r) => r.outcome === 'accepted' && r.moved),
    JSON.stringify(first),
  );
  t.true(calls() - before <= 12, `60 writes in ${calls() - before} script calls`);
  // Replays, and newer registrations at another node while node-a keeps the devices fresh, in one batch each.
  const replayed = await Promise.all(ids.map((id) => a.record(id, entry(now, 5000, now))));
  t.true(replayed.every((r) => r.outcome === 'replayed'));
  const held = await Promise.all(ids.map((id) => b.record(id, { ...entry(now + 1000, 5000, now), node: 'node-b' })));
  t.true(held.every((r) => r.outcome === 'held'));
  const moved = await Promise.all(ids.map((id, i) => a.record(id, entry(now + 1 + (i % 2), 4000 + (i % 2), now))));
  t.deepEqual(
    moved.map((r) => r.outcome === 'accepted' && r.moved),
    ids.map((_, i) => i % 2 === 1),
    'each device decided on its own entry',
  );
  t.like(await b.lookup('BATCH-7'), { node: 'node-a', port: 4001, lastTimestampMs: now + 2 });
});

redisSerialTest('fleet-wide limits: two nodes share one bucket per key (GCRA in Lua, one round trip)', async (t) => {
  const a = await node('node-a', 'c3:', 0);
  const b = await node('node-b', 'c3:', 1);
  const interval = 60_000; // 1 a minute
  const tolerance = interval * 3; // burst 3
  const results: boolean[] = [];
  for (let i = 0; i < 8; i++) results.push(await (i % 2 ? a : b).limit('rs', '198.51.100.7', interval, tolerance, true));
  t.deepEqual(results, [true, true, true, false, false, false, false, false], 'the burst is fleet-wide, not per node');
  t.true(await a.limit('rs', '198.51.100.8', interval, tolerance, false), 'another source has its own bucket');
  t.false(await b.limit('rs', '198.51.100.7', interval, tolerance, false), 'a check charges nothing and sees the shared bucket');
});

redisSerialTest(
  'failover: a primary is killed, its replica takes over; registrations, lookups and messages recover by themselves',
  async (t) => {
    const a = await node('node-a', 'c4:', 0);
    const b = await node('node-b', 'c4:', 1);
    const got: NodeMessage[] = [];
    b.onMessage((m) => got.push(m));
    await until('b subscribed', async () => (await a.send('node-b', attached(0))) === 1);
    // Kill the primary that holds node-b's channel: its subscription must move to the new primary.
    const victim = await cluster.primaryFor('c4:n:node-b');
    for (let i = 0; i < 20; i++) await a.record(`FO-${i}`, entry(1));
    const validBefore = a.writesValidSinceMs;
    const { failoverMs } = await cluster.killPrimary(victim);
    const t0 = Date.now();
    let n = 0;
    const writesBackMs = await until('a write to every shard', async () => {
      try {
        for (let i = 0; i < 20; i++) await a.record(`FO-${i}`, entry(2 + n));
        n++;
        return true;
      } catch {
        n++;
        return false;
      }
    });
    got.length = 0;
    let k = 1;
    const messagesBackMs = await until('a message through the new primary', async () => {
      await a.send('node-b', attached(k++)).catch(() => 0);
      await new Promise((r) => setTimeout(r, 100));
      return got.length > 0;
    });
    t.true((await b.lookup('FO-7'))!.lastTimestampMs >= 2);
    t.true(a.writesValidSinceMs > validBefore, 'entries written before the failover are rewritten at their next registration');
    t.log(
      `primary killed: cluster whole again after ${failoverMs} ms; node writes ok ${writesBackMs} ms and messages ${messagesBackMs} ms after that (total ${Date.now() - t0 + failoverMs} ms)`,
    );
  },
);
