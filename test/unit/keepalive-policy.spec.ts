/** The adaptive keepalive's learning, against simulated routers that forget a mapping after T. */
import test from 'ava';
import { CHECK_EVERY_ROUNDS, createKeepalivePolicy } from '../../agent/device/keepalive-policy.js';
import { checkAgentSettings } from '../../agent/device/settings.js';

/** Run `rounds` rounds against a router with mapping timeout `timeoutMs`; every checked round reports the truth. */
function simulate(timeoutMs: number, rounds: number, bounds = { minIntervalMs: 15_000, maxIntervalMs: 300_000 }) {
  const p = createKeepalivePolicy(bounds);
  let losses = 0;
  const intervals: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const idle = p.nextIntervalMs();
    intervals.push(idle);
    const alive = idle < timeoutMs;
    if (!alive) losses++;
    if (p.roundWantsCheck()) p.record(idle, alive);
  }
  return { p, losses, intervals };
}

for (const timeoutS of [30, 180]) {
  test(`a router that forgets after ${timeoutS} s: learnt within 10 % below it, with few losses on the way`, (t) => {
    const { p, losses, intervals } = simulate(timeoutS * 1000, 40);
    const s = p.state();
    t.is(s.phase, 'learnt');
    t.true(s.goodMs < timeoutS * 1000, `${s.goodMs}`);
    t.true(s.goodMs >= timeoutS * 1000 * 0.85, `${s.goodMs}`);
    t.true(losses <= 4, `${losses} losses: ${intervals.join(', ')}`);
    t.true(intervals.every((i) => i >= 15_000));
  });
}

test('never below the minimum nor above the maximum; a router that keeps mappings forever is refreshed at the maximum', (t) => {
  const { p, intervals } = simulate(Infinity, 20, { minIntervalMs: 15_000, maxIntervalMs: 100_000 });
  t.is(p.state().goodMs, 100_000);
  t.is(p.state().phase, 'learnt');
  t.true(intervals.every((i) => i >= 15_000 && i <= 100_000));
  t.throws(() => createKeepalivePolicy({ minIntervalMs: 20_000, maxIntervalMs: 10_000 }), { instanceOf: RangeError });
});

test('a loss at the learnt interval (the router changed) falls back to the minimum at once, then learns again', (t) => {
  const p = createKeepalivePolicy({ minIntervalMs: 15_000, maxIntervalMs: 300_000 });
  for (let i = 0; i < 40; i++) {
    const idle = p.nextIntervalMs();
    if (p.roundWantsCheck()) p.record(idle, idle < 180_000);
  }
  const learnt = p.state().goodMs;
  t.true(learnt > 150_000);
  p.record(learnt, false);
  t.is(p.nextIntervalMs(), 22_500 > learnt ? learnt : Math.round((15_000 + learnt) / 2));
  t.is(p.state().goodMs, 15_000);
  t.is(p.state().phase, 'learning');
});

test('once learnt, one round in CHECK_EVERY_ROUNDS is checked', (t) => {
  const p = createKeepalivePolicy({ minIntervalMs: 15_000, maxIntervalMs: 15_000 });
  let checks = 0;
  for (let i = 0; i < CHECK_EVERY_ROUNDS * 3; i++) {
    if (p.roundWantsCheck()) {
      checks++;
      p.record(15_000, true);
    }
  }
  t.is(checks, 3);
});

const baseAgent = () => ({ identity_file: 'id.toml', server: { host: 'rv.example.net' }, services: { http: '127.0.0.1:80' } });

test('settings: [keepalive] defaults to adaptive; adaptive bounds are validated (15 s floor, max >= min, unknown keys)', (t) => {
  t.like(checkAgentSettings(baseAgent(), '/etc/a.toml').keepalive, { mode: 'adaptive', minIntervalMs: 20_000, maxIntervalMs: 80_000 });
  t.like(
    checkAgentSettings(
      { ...baseAgent(), keepalive: { mode: 'adaptive', min_interval_ms: 15_000, max_interval_ms: 600_000 } },
      '/etc/a.toml',
    ).keepalive,
    {
      mode: 'adaptive',
      minIntervalMs: 15_000,
      maxIntervalMs: 600_000,
    },
  );
  const err = t.throws(() =>
    checkAgentSettings(
      { ...baseAgent(), keepalive: { mode: 'smart', min_interval_ms: 5000, max_interval_ms: 16_000, x: 1 } },
      '/etc/a.toml',
    ),
  ) as unknown as { problems: string[] };
  t.true(err.problems.some((p) => p.includes('keepalive.mode')));
  t.true(err.problems.some((p) => p.includes('keepalive.min_interval_ms: expected an integer from 15000')));
  t.true(err.problems.some((p) => p.includes('keepalive.x: unknown key')));
  const inverted = t.throws(() =>
    checkAgentSettings({ ...baseAgent(), keepalive: { min_interval_ms: 60_000, max_interval_ms: 30_000 } }, '/etc/a.toml'),
  ) as unknown as { problems: string[] };
  t.true(inverted.problems.some((p) => p.includes('keepalive.max_interval_ms: expected at least')));
});
