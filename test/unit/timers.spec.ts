/** The injectable time source: the real one sleeps and aborts; the manual one fires due timers in order, only when advanced. */
import test from 'ava';
import { ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';
import { systemTimers } from '../../agent/common/timers.js';
import { ManualClock } from '../helpers/manual-clock.js';

test('systemTimers: sleep resolves; an aborted sleep rejects with PEERLINK_ERR_ABORTED, at once or while waiting', async (t) => {
  await systemTimers.sleep(1);
  const done = new AbortController();
  done.abort();
  await t.throwsAsync(systemTimers.sleep(1, done.signal), { code: ErrorCodes.ABORTED });
  const later = new AbortController();
  const pending = systemTimers.sleep(60_000, later.signal);
  later.abort();
  const err = await pending.catch((e: unknown) => e);
  t.true(isPeerlinkError(err, ErrorCodes.ABORTED));
  const h = systemTimers.setTimeout(() => undefined, 60_000).unref();
  t.false(h.hasRef());
  systemTimers.clearTimeout(h);
});

test('manual clock: nothing fires until advanced; due timers fire in time order, ties in the order set', async (t) => {
  const clock = new ManualClock(1000);
  const seen: string[] = [];
  clock.setTimeout(() => seen.push(`b@${clock.now()}`), 20);
  clock.setTimeout(() => seen.push(`a@${clock.now()}`), 10);
  clock.setTimeout(() => seen.push(`c@${clock.now()}`), 20);
  const cleared = clock.setTimeout(() => seen.push('cleared'), 5);
  clock.clearTimeout(cleared);
  t.deepEqual(seen, []);
  await clock.advance(15);
  t.deepEqual(seen, ['a@1010']);
  t.is(clock.now(), 1015);
  await clock.advance(5);
  t.deepEqual(seen, ['a@1010', 'b@1020', 'c@1020']);
  t.is(clock.pending, 0);
});

test('manual clock: intervals repeat; a timer set by a callback fires within the same advance; promises settle between timers', async (t) => {
  const clock = new ManualClock(0);
  const seen: number[] = [];
  const every = clock.setInterval(() => seen.push(clock.now()), 100);
  clock.setTimeout(() => void Promise.resolve().then(() => clock.setTimeout(() => seen.push(-clock.now()), 30)), 150);
  await clock.advance(350);
  t.deepEqual(seen, [100, -180, 200, 300]);
  clock.clearInterval(every);
  await clock.advance(1000);
  t.deepEqual(seen, [100, -180, 200, 300]);
});

test('manual clock: sleep resolves when advanced past it and rejects when aborted', async (t) => {
  const clock = new ManualClock();
  let woke = false;
  const s = clock.sleep(50).then(() => (woke = true));
  await clock.advance(49);
  t.false(woke);
  await clock.advance(1);
  await s;
  t.true(woke);
  const ac = new AbortController();
  const aborted = clock.sleep(50, ac.signal);
  ac.abort();
  await t.throwsAsync(aborted, { code: ErrorCodes.ABORTED });
  t.is(clock.pending, 0, 'the aborted sleep left no timer behind');
});
