/**
 * A device that stops registering is refused as offline (DEVICE_STALE) at every node within
 * stale_after_ms and one stale scan, though write on change lets the shared entry's last-seen lag
 * by up to refresh_after_ms (180 s by default): its holder marks it stale in Redis with its exact
 * last registration (redis-registry.ts, `staleMark`). Without the mark, node 2 would find the entry
 * fresh and route the request to node 1, and the client would wait for a device that is gone.
 */
import { redisSerialTest } from '../helpers/redis-test.js';
import { startRedis } from '../../scripts/lib/redis-process.js';
import { echoService } from '../helpers/flow.js';
import { startTwoNodes } from '../helpers/multi-node.js';
import { runNode } from '../helpers/run-process.js';
import { PROGRAMS } from '../../scripts/lib/program.js';

const EXIT_DEVICE_STALE = 11;
const STALE_AFTER_MS = 1000;
/** stale_after_ms, one stale scan (half of it here), and the agent's and the nodes' start-up slack. */
const REFUSED_WITHIN_MS = STALE_AFTER_MS * 3;

redisSerialTest('a device that stopped registering is refused as offline at both nodes within stale_after_ms and one scan', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const echo = await echoService(t);
  const f = await startTwoNodes(t, {
    redis,
    services: { echo: `127.0.0.1:${echo.port}` },
    serverExtra: `[registry]\nstale_after_ms = ${STALE_AFTER_MS}\n`,
    directDialOnly: true,
  });
  await f.agent.stop();
  await new Promise((r) => setTimeout(r, REFUSED_WITHIN_MS));
  for (const node of [1, 0] as const) {
    const r = await runNode(PROGRAMS.client, f.clientArgs(node, 'echo', ['--stdio']));
    t.is(r.code, EXIT_DEVICE_STALE, `node ${node + 1}: ${r.stderr}`);
    t.regex(r.stderr, /PEERLINK_ERR_DEVICE_STALE/);
  }
});
