/**
 * Redis goes away and comes back. Meanwhile each node keeps serving what it can (devices
 * registered with it), says clearly what it cannot (exit 24, PEERLINK_ERR_SERVER_DEGRADED, in the
 * client; an error in the node's log; /healthz 503), and recovers on its own when Redis returns —
 * empty, as after a restart without persistence — without waiting for devices to re-register.
 */
import { redisTest } from '../helpers/redis-test.js';
import { createHash, randomBytes } from 'node:crypto';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { startRedis } from '../../scripts/lib/redis-process.js';
import { echoService } from '../helpers/flow.js';
import { httpGet, sample, startTwoNodes } from '../helpers/multi-node.js';
import { runNode, runNodeStdio } from '../helpers/run-process.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

redisTest('outage: the device node still serves its device, the other says it cannot; both recover after a restart', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const echo = await echoService(t);
  const f = await startTwoNodes(t, { redis, services: { echo: `127.0.0.1:${echo.port}` } });
  const data = randomBytes(64 * 1024);
  const viaNode = (n: 0 | 1) => runNodeStdio(PROGRAMS.client, f.clientArgs(n, 'echo', ['--stdio']), data, (kill) => t.teardown(kill));

  const before = await viaNode(1);
  t.is(before.code, 0, `before the outage: ${before.stderr}`);

  await redis.stop();
  await Promise.all(
    f.nodes.map((n) => n.waitFor((l) => l.msg === 'redis unreachable: serving devices registered at this node only; retrying', 10_000)),
  );
  for (const port of f.metricsPorts) {
    const h = await httpGet(port, '/healthz');
    t.is(h.status, 503, 'load balancers are told');
    t.like(JSON.parse(h.body), { status: 'registry-unreachable' });
  }

  const own = await viaNode(0);
  t.is(own.code, 0, `node 1 serves the device registered with it: ${own.stderr}`);
  t.is(own.sha256, sha(data));

  const other = await runNode(PROGRAMS.client, f.clientArgs(1, 'echo', ['--stdio']));
  t.is(other.code, 24, other.stderr);
  t.regex(other.stderr, /PEERLINK_ERR_SERVER_DEGRADED/);
  t.regex(other.stderr, /shared registry/);
  const m2 = (await httpGet(f.metricsPorts[1], '/metrics')).body;
  t.is(sample(m2, /^peerlink_connection_requests_total\{outcome="registry_unavailable"/), 1);
  t.is(sample(m2, /^peerlink_registry_up\{backend="redis"/), 0);

  const seenBefore = f.nodes.map((n) => n.lines.length);
  await redis.start(); // same port, empty store
  // Each node reconnects on its own back-off: wait for both (node 2's health is read next), and
  // only for lines logged after the restart (waitFor also matches lines already seen).
  await Promise.all(
    f.nodes.map((n, i) =>
      n.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('redis back') && n.lines.indexOf(l) >= seenBefore[i]!, 15_000),
    ),
  );
  const h = await httpGet(f.metricsPorts[1], '/healthz');
  t.is(h.status, 200);
  const after = await viaNode(1);
  t.is(after.code, 0, `after the restart, without waiting for a re-registration: ${after.stderr}`);
  t.is(after.sha256, sha(data));
});
