/** The watchdog pings at half of WATCHDOG_USEC, only for our PID, and only while the health check passes. */
import test from 'ava';
import { createNotifier } from '../../agent/systemd/notify.js';
import { createWatchdog, watchdogPeriodMs } from '../../agent/systemd/watchdog.js';

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
  let healthy = true;
  const wd = createWatchdog({ notifier, env, pid: 1, health: () => (healthy ? { ok: true } : { ok: false, reason: 'test' }) });
  t.is(wd.intervalMs, 100);
  wd.start();
  const ka = setInterval(() => undefined, 50); // the watchdog's timer is unref()ed
  try {
    await new Promise((r) => setTimeout(r, 350));
    const healthyPings = sent.length;
    t.true(healthyPings >= 2, `pings ${healthyPings}`);
    healthy = false;
    await new Promise((r) => setTimeout(r, 120));
    const atFailure = sent.length;
    await new Promise((r) => setTimeout(r, 350));
    t.is(sent.length, atFailure, 'no ping while the health check fails');
    healthy = true;
    await new Promise((r) => setTimeout(r, 250));
    t.true(sent.length > atFailure);
    t.true(sent.every((a) => a.length === 1 && a[0] === 'WATCHDOG=1'));
  } finally {
    wd.stop();
    clearInterval(ka);
  }
});

test('no watchdog without systemd', (t) => {
  const notifier = createNotifier({ env: {} });
  const wd = createWatchdog({ notifier, env: { WATCHDOG_USEC: '1000000' }, health: () => ({ ok: true }) });
  t.is(wd.intervalMs, null);
});
