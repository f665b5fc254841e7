/** The notifier: inert without NOTIFY_SOCKET; one child at a time; fields queued behind a running child are merged. */
import test from 'ava';
import { createNotifier, type SpawnNotify } from '../../agent/systemd/notify.js';
import { ManualClock } from '../helpers/manual-clock.js';

/** A fake systemd-notify whose child takes `delayMs` of the manual clock `clock`. */
function recorder(
  delayMs = 20,
  clock = new ManualClock(),
): { calls: string[][]; spawnNotify: SpawnNotify; maxInFlight: () => number; clock: ManualClock } {
  const calls: string[][] = [];
  let inFlight = 0;
  let max = 0;
  return {
    calls,
    clock,
    maxInFlight: () => max,
    spawnNotify: async (args, env) => {
      if (!env.NOTIFY_SOCKET) throw new Error('no NOTIFY_SOCKET passed to the child');
      inFlight++;
      max = Math.max(max, inFlight);
      calls.push([...args]);
      if (delayMs > 0) await clock.sleep(delayMs);
      inFlight--;
    },
  };
}

test('without NOTIFY_SOCKET nothing is sent', async (t) => {
  const r = recorder();
  const n = createNotifier({ env: {}, spawnNotify: r.spawnNotify });
  t.false(n.enabled);
  await n.send({ READY: '1' });
  t.deepEqual(r.calls, []);
});

test('messages go one at a time; those queued behind a running child merge, newest STATUS wins', async (t) => {
  const r = recorder();
  const n = createNotifier({ env: { NOTIFY_SOCKET: '/run/systemd/notify' }, spawnNotify: r.spawnNotify });
  const first = n.send({ STATUS: 'a' });
  const rest = [n.send({ STATUS: 'b' }), n.send({ READY: '1' }), n.send({ STATUS: 'c' })];
  await r.clock.advance(10);
  t.is(r.calls.length, 1, 'the first child is still running; the rest wait behind it');
  await r.clock.advance(40);
  await Promise.all([first, ...rest]);
  t.deepEqual(r.calls, [['STATUS=a'], ['STATUS=c', 'READY=1']]);
  t.is(r.maxInFlight(), 1);
  t.deepEqual(n.counters(), { sent: 2, failed: 0, merged: 2 });
});

test('a newline in a value cannot split the message into extra fields', async (t) => {
  const r = recorder(0);
  const n = createNotifier({ env: { NOTIFY_SOCKET: '@x' }, spawnNotify: r.spawnNotify });
  await n.send({ STATUS: 'ok\nREADY=1' });
  t.deepEqual(r.calls, [['STATUS=ok READY=1']]);
});

test('a failing child is counted and does not stop later messages', async (t) => {
  let calls = 0;
  const n = createNotifier({
    env: { NOTIFY_SOCKET: '@x' },
    spawnNotify: async () => {
      if (++calls === 1) throw new Error('boom');
    },
  });
  await n.send({ STATUS: 'a' });
  await n.send({ STATUS: 'b' });
  t.deepEqual(n.counters(), { sent: 1, failed: 1, merged: 0 });
});
