/**
 * The Redis backend on a real Redis Cluster whose nodes require a password (requirepass, the
 * replicas with masterauth): with the password a node registers, looks up and messages another
 * node (sharded pub/sub) on every shard; with a wrong one, or none, nothing reaches the cluster
 * (the registry stays down and a write fails), so the setting is really what opens it. And the
 * real server and agent: `[redis] password_file` (0600) opens the cluster, the device's entry is there.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { startProgram } from '../../scripts/lib/program.js';
import { redisAvailable, redisSerialTest } from '../helpers/redis-test.js';
import { createRedisRegistry, type NodeMessage, type RedisRegistry } from '../../agent/server/redis-registry.js';
import { silentLogger } from '../../agent/common/logger.js';
import { startRedisCluster, type RedisCluster } from '../../scripts/lib/redis-cluster.js';

const PASSWORD = randomBytes(12).toString('hex');
let cluster: RedisCluster;
const open: RedisRegistry[] = [];
test.before(async () => {
  if (redisAvailable) cluster = await startRedisCluster({ password: PASSWORD });
});
test.after.always(async () => {
  await Promise.all(open.map((r) => r.stop()));
  await cluster?.stop();
});

async function node(nodeId: string, password: string | undefined, seed = 0): Promise<RedisRegistry> {
  const r = createRedisRegistry({
    clusterNodes: [cluster.seeds[seed]!],
    nodeId,
    keyPrefix: 'pw:',
    forgetAfterMs: 600_000,
    logger: silentLogger(),
    commandTimeoutMs: 2000,
    ...(password === undefined ? {} : { password }),
  });
  open.push(r);
  await r.start();
  return r;
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

redisSerialTest(
  'a cluster with requirepass: with the password, registrations on every shard and messages between nodes work',
  async (t) => {
    const a = await node('pw-a', PASSWORD, 0);
    const b = await node('pw-b', PASSWORD, 3);
    await until('both nodes up', () => a.up && b.up);
    // Enough devices to touch all three primaries.
    for (let i = 0; i < 30; i++)
      t.is(
        (await a.record(`PW-${i}`, { address: '202.204.16.13', port: 4000 + i, lastSeenMs: Date.now(), lastTimestampMs: 1000 })).outcome,
        'accepted',
      );
    for (let i = 0; i < 30; i++) t.is((await b.lookup(`PW-${i}`))?.port, 4000 + i);
    const got: NodeMessage[] = [];
    b.onMessage((m) => got.push(m));
    const m: NodeMessage = { kind: 'attached', requestId: '0'.repeat(32), byNode: 'pw-a' };
    let delivered = 0;
    for (let i = 0; i < 100 && delivered === 0; i++) {
      delivered = await a.send('pw-b', m);
      if (delivered === 0) await new Promise((r) => setTimeout(r, 100));
    }
    t.is(delivered, 1, 'node b subscribed and got the message');
    await until('the message arrived', () => got.length > 0);
    t.deepEqual(got[0], m);
  },
);

redisSerialTest('a cluster with requirepass: a wrong password, or none, reaches nothing', async (t) => {
  for (const password of ['not-the-password', undefined]) {
    const r = await node(`pw-${password ?? 'none'}`, password);
    await new Promise((res) => setTimeout(res, 1500));
    t.false(r.up, `password ${password ?? '(none)'}: the registry must not come up`);
    await t.throwsAsync(
      Promise.resolve(r.record('PW-X', { address: '202.204.16.13', port: 1, lastSeenMs: Date.now(), lastTimestampMs: 1 })),
    );
  }
});

test('the password of a single Redis goes in its URL, not in password', (t) => {
  t.throws(() =>
    createRedisRegistry({
      url: 'redis://127.0.0.1:1',
      password: 'x',
      nodeId: 'n',
      keyPrefix: 'p:',
      forgetAfterMs: 1000,
      logger: silentLogger(),
    }),
  );
});

redisSerialTest('the real server with [redis] password_file registers the real agent in the password-protected cluster', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-redis-pw-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const passwordFile = join(dir, 'redis.password');
  await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  const setup = await createLoopbackSetup({
    dir,
    services: { echo: '127.0.0.1:9' },
    serverExtra: `[redis]\ncluster_nodes = ["${cluster.seeds[1]!}"]\npassword_file = "${passwordFile}"\nnode_id = "pw-server"\nkey_prefix = "pws:"`,
  });
  const server = startProgram('server', ['--config', setup.serverConfig]);
  t.teardown(() => server.stop().then(() => undefined));
  await server.waitFor((l) => l.msg === 'redis reachable: the shared registry is in use');
  t.false(
    server.lines.some((l) => JSON.stringify(l).includes(PASSWORD)),
    'the password is never logged',
  );
  const agent = startProgram('agent', ['--config', setup.agentConfig]);
  t.teardown(() => agent.stop().then(() => undefined));
  await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
  const reader = createRedisRegistry({
    clusterNodes: [cluster.seeds[2]!],
    password: PASSWORD,
    nodeId: 'pw-reader',
    keyPrefix: 'pws:',
    forgetAfterMs: 600_000,
    logger: silentLogger(),
  });
  open.push(reader);
  await reader.start();
  let e;
  for (let i = 0; i < 50 && !(e = await reader.lookup(setup.equipmentId).catch(() => undefined)); i++)
    await new Promise((r) => setTimeout(r, 100));
  t.is(e?.node, 'pw-server');
});
