/**
 * Failover under the real programs: two server nodes and the agent on a Redis Cluster; the
 * primary holding the device's entry is SIGKILLed and its replica takes over. The device's entry
 * is then deleted, as when the primary died before replicating the device's last write
 * (replication is asynchronous): with write on change the device's node would not rewrite an
 * unchanged entry for a minute, but a failover makes it rewrite every entry at the next
 * registration. So a client asking the other node connects again within one registration
 * interval of the failover. The time is measured and logged (docs/fleet.md).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { redisTest } from '../helpers/redis-test.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { startRedisCluster } from '../../scripts/lib/redis-cluster.js';
import { echoService } from '../helpers/flow.js';
import { httpGet, sample, startTwoNodes } from '../helpers/multi-node.js';
import { runNodeStdio } from '../helpers/run-process.js';

/** The agent's registration interval in the fixture (loopback-setup's default; the agent's minimum). */
const REGISTER_INTERVAL_MS = 15_000;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

redisTest('a primary fails over: every device is routable again within one registration interval, without a restart', async (t) => {
  const cluster = await startRedisCluster();
  t.teardown(() => cluster.stop());
  const echo = await echoService(t);
  const f = await startTwoNodes(t, { redis: cluster, services: { echo: `127.0.0.1:${echo.port}` }, directDialOnly: true });
  const data = randomBytes(32 * 1024);
  const viaNode2 = () => runNodeStdio(PROGRAMS.client, f.clientArgs(1, 'echo', ['--stdio']), data, (kill) => t.teardown(kill));
  const before = await viaNode2();
  t.is(before.code, 0, before.stderr);

  const key = `pl:{d:${f.setup.equipmentId}}`;
  const victim = await cluster.primaryFor(key);
  const t0 = Date.now();
  const { failoverMs } = await cluster.killPrimary(victim);
  // The entry is gone from the new primary, as if its last write had not been replicated.
  const live = cluster.nodes.find((n) => n.running)!;
  const del = spawnSync('redis-cli', ['-c', '-p', String(live.port), 'DEL', key], { encoding: 'utf8' });
  t.is(del.stdout.trim(), '1', `${del.stdout}${del.stderr}`);
  const deletedAt = Date.now();

  let attempts = 0;
  let last = '';
  for (;;) {
    attempts++;
    const r = await viaNode2();
    if (r.code === 0) {
      t.is(r.sha256, sha(data));
      break;
    }
    last = r.stderr;
    if (Date.now() - deletedAt > 2 * REGISTER_INTERVAL_MS) break;
    await new Promise((w) => setTimeout(w, 500));
  }
  const routableMs = Date.now() - deletedAt;
  t.log(
    `primary ${victim} killed: replica promoted in ${failoverMs} ms; device routable again ${routableMs} ms after its entry was lost (${Date.now() - t0} ms after the kill, ${attempts} attempts)`,
  );
  t.true(
    routableMs <= REGISTER_INTERVAL_MS + 2000,
    `routable again within one registration interval (+ a connect), after ${routableMs} ms: ${last}`,
  );
  const m1 = (await httpGet(f.metricsPorts[0], '/metrics')).body;
  t.true(
    (sample(m1, /^peerlink_shared_registry_writes_total\{outcome="written"/) ?? 0) >= 2,
    'the device node rewrote the entry after the failover',
  );
});
