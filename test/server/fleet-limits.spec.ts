/**
 * Fleet-wide request limits: two real server nodes share one bucket per source through Redis
 * (rate-limiter.ts createSharedRateLimiter, GCRA in Lua), so a source gets the limit once across
 * the fleet, not once per node. While Redis is away each node falls back to its own bucket.
 */
import test from 'ava';
import { redisTest } from '../helpers/redis-test.js';
import { createRateLimiter, createSharedRateLimiter, type SharedLimitStore } from '../../agent/server/rate-limiter.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { startRedis } from '../../scripts/lib/redis-process.js';
import { echoService } from '../helpers/flow.js';
import { startTwoNodes } from '../helpers/multi-node.js';
import { runNode } from '../helpers/run-process.js';

redisTest(
  'the per-source request limit is one limit across the nodes: the third request is refused though each node saw fewer than the burst',
  async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    const echo = await echoService(t);
    const f = await startTwoNodes(t, {
      redis,
      services: { echo: `127.0.0.1:${echo.port}` },
      serverExtra: '[limits]\nrequests_per_source_per_min = 1\nrequests_per_source_burst = 2\n',
    });
    const ask = (node: 0 | 1) =>
      runNode(
        PROGRAMS.client,
        f.clientArgs(node, 'echo', ['--stdio']).map((a) => (a === f.setup.equipmentId ? 'NO-SUCH-DEVICE' : a)),
      );
    t.is((await ask(0)).code, 10, 'first: unknown device');
    t.is((await ask(1)).code, 10, 'second, at the other node: unknown device');
    const third = await ask(0);
    t.is(third.code, 23, third.stderr);
    t.regex(third.stderr, /PEERLINK_ERR_RATE_LIMITED/);
  },
);

test('while Redis is away (or a call fails) the node answers from its own bucket, which every check charges', async (t) => {
  let up = true;
  let fail = false;
  const calls: string[] = [];
  const store: SharedLimitStore = {
    get up() {
      return up;
    },
    limit: async (name, key, _i, _tol, charge) => {
      calls.push(`${name}:${key}:${charge}`);
      if (fail) throw new Error('redis timeout');
      return true; // the fleet's bucket says yes
    },
  };
  const clock = { now: () => 1000 };
  const l = createSharedRateLimiter('rs', createRateLimiter({ perSecond: 1 / 60, burst: 2 }, clock), store);
  t.true(await l.takeShared('a'));
  t.true(await l.takeShared('a'));
  t.true(await l.takeShared('a'), 'Redis answers: the shared bucket decides');
  t.deepEqual(calls, ['rs:a:true', 'rs:a:true', 'rs:a:true']);
  up = false;
  t.false(await l.takeShared('a'), 'Redis away: the local bucket (already charged three times) decides');
  t.is(calls.length, 3, 'no call while Redis is down');
  up = true;
  fail = true;
  t.false(await l.peekShared('a'), 'a failed call: the local bucket decides');
  t.true(await l.peekShared('b'));
  t.is(l.localFallbacks, 3);
});
