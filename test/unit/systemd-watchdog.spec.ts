/** The watchdog pings at half of WATCHDOG_USEC, only for our PID, and only while the health check passes. */
import test from 'ava';
import { createNotifier } from '../../agent/systemd/notify.js';
import { createWatchdog, watchdogPeriodMs } from '../../agent/systemd/watchdog.js';
import type { TimerHandle } from '../../agent/common/timers.js';
import { ManualClock } from '../helpers/manual-clock.js';

test('the period comes from WATCHDOG_USEC, for WATCHDOG_PID only', (t) => {
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: '4000000' }, 10), 4000);
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: '4000000', WATCHDOG_PID: '10' }, 10), 4000);
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: '4000000', WATCHDOG_PID: '11' }, 10), null);
  t.is(watchdogPeriodMs({}, 10), null);
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: 'x' }, 10), null);
});

test('pings while healthy, withholds them while not, resumes after', async (t) => {
  const sent: string[][] = [];
  const env = { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '200000' };
  const notifier = createNotifier({ env, spawnNotify: async (args) => void sent.push([...args]) });
  const clock = new ManualClock();
  let healthy = true;
  const wd = createWatchdog({
    notifier,
    env,
    pid: 1,
    timers: clock,
    health: () => (healthy ? { ok: true } : { ok: false, reason: 'test' }),
  });
  t.is(wd.intervalMs, 100);
  wd.start();
  t.teardown(() => wd.stop());
  await clock.advance(99);
  t.is(sent.length, 0, 'the first ping comes one interval after start');
  await clock.advance(1);
  t.is(sent.length, 1);
  await clock.advance(200);
  t.is(sent.length, 3, 'one ping per interval while healthy');
  healthy = false;
  await clock.advance(500);
  t.is(sent.length, 3, 'no ping while the health check fails');
  healthy = true;
  await clock.advance(100);
  t.is(sent.length, 4, 'pings resume at the next interval');
  t.true(sent.every((a) => a.length === 1 && a[0] === 'WATCHDOG=1'));
  wd.stop();
  t.is(clock.pending, 0, 'stop() clears the interval');
});

test('the watchdog timer does not hold the process open', (t) => {
  const clock = new ManualClock();
  const notifier = createNotifier({ env: { NOTIFY_SOCKET: '@x' }, spawnNotify: async () => undefined });
  let handle: TimerHandle | undefined;
  const setInterval = clock.setInterval.bind(clock);
  clock.setInterval = (fn, ms) => (handle = setInterval(fn, ms));
  const wd = createWatchdog({
    notifier,
    env: { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '1000000' },
    pid: 1,
    timers: clock,
    health: () => ({ ok: true }),
  });
  wd.start();
  t.teardown(() => wd.stop());
  t.false(handle?.hasRef() ?? true, 'unref()ed');
});

test('no watchdog without systemd', (t) => {
  const notifier = createNotifier({ env: {} });
  const wd = createWatchdog({ notifier, env: { WATCHDOG_USEC: '1000000' }, health: () => ({ ok: true }) });
  t.is(wd.intervalMs, null);
});
