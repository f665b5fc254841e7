/**
 * Fault: the redis-server two nodes share is killed (SIGKILL), then restarted — once empty (as
 * after a crash without persistence) and once from its own append-only file. While it is down the
 * device's node still serves its device and the other node says clearly that it cannot (exit 24);
 * after each restart a request through the other node connects again, without waiting for the
 * device to re-register. The recovery times are printed for docs/faults.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis } from '../../scripts/lib/redis-process.js';
import { echoService } from '../helpers/flow.js';
import { startTwoNodes } from '../helpers/multi-node.js';
import { redisTest } from '../helpers/redis-test.js';
import { figure, runClient, sleep } from '../helpers/faults.js';

const RECOVERY_LIMIT_MS = 30_000;

redisTest(
  'Redis killed, restarted empty, killed again, restarted from its own persistence: clear errors meanwhile, recovery without re-registration',
  async (t) => {
    t.timeout(150_000);
    const persistDir = await mkdtemp(join(tmpdir(), 'peerlink-redis-aof-'));
    t.teardown(() => rm(persistDir, { recursive: true, force: true }));
    const redis = await startRedis({ persistDir });
    t.teardown(() => redis.stop());
    const echo = await echoService(t);
    // The device registers every 15 s: a recovery within a second is the nodes' own republishing.
    const f = await startTwoNodes(t, { redis, services: { echo: `127.0.0.1:${echo.port}` } });
    const line = 'via the other node\n';
    const viaNode2 = () => runClient(f.clientArgs(1, 'echo', ['--stdio']), line, 60_000).done;
    t.is((await viaNode2()).code, 0);

    for (const how of ['empty', 'from its persistence'] as const) {
      await redis.stop(); // SIGKILL
      if (how === 'empty') await rm(join(persistDir, 'appendonlydir'), { recursive: true, force: true });
      await sleep(2_000);
      const during = await viaNode2();
      t.is(during.code, 24, `while Redis is down: ${during.said}`);
      figure(t, `Redis killed (${how} next): a request through the other node`, `${during.ms} ms, exit ${during.code}: ${during.said}`);
      await redis.start();
      const upAt = performance.now();
      let ok = await viaNode2();
      while (ok.code !== 0 && performance.now() - upAt < RECOVERY_LIMIT_MS) {
        await sleep(250);
        ok = await viaNode2();
      }
      const recoveredMs = Math.round(performance.now() - upAt);
      t.is(ok.code, 0, `after Redis restarted ${how}: ${ok.said}`);
      t.is(ok.stdout, line);
      figure(
        t,
        `Redis restarted ${how}: first request through the other node connects after`,
        `${recoveredMs} ms (including that request's own ${ok.ms} ms)`,
      );
    }
  },
);
