/**
 * The path race both ends run (agent/paths/path-race.ts): the first channel wins, the others are
 * cancelled and one that comes up late is closed; the fallback starts once every other attempt has
 * failed (not only at its timer); failures are named; a deadline names them too.
 */
import test from 'ava';
import { racePaths, type PathAttempt } from '../../agent/paths/path-race.js';

class Stream {
  destroyed = false;
  constructor(readonly name: string) {}
  destroy(): void {
    this.destroyed = true;
  }
}
type Attempt = PathAttempt<Stream>;

/** An attempt that settles when told to, and records the abort of its signal. */
function manual(via: Attempt['via'], extra: Partial<Attempt> = {}) {
  let settle!: { win: (s: Stream) => void; fail: (e: Error) => void };
  let aborted = false;
  let started = false;
  const attempt: Attempt = {
    via,
    ...extra,
    start: (signal) => {
      started = true;
      signal.addEventListener('abort', () => (aborted = true), { once: true });
      return new Promise<Stream>((win, fail) => (settle = { win, fail }));
    },
  };
  return { attempt, settle: () => settle, aborted: () => aborted, started: () => started };
}

test('the first channel wins; the others are cancelled, and one that completes late is closed', async (t) => {
  const dial = manual('dial');
  const punch = manual('punch');
  const race = racePaths<Stream, Attempt>({ attempts: [dial.attempt, punch.attempt] });
  const winner = new Stream('punch');
  punch.settle().win(winner);
  const won = await race;
  t.is(won.stream, winner);
  t.is(won.attempt.via, 'punch');
  t.true(dial.aborted());
  const late = new Stream('dial');
  dial.settle().win(late);
  await new Promise((r) => setImmediate(r));
  t.true(late.destroyed);
  t.false(winner.destroyed);
});

test('the fallback starts at once when every other attempt has failed, and the failures are named', async (t) => {
  const dial = manual('dial', { label: 'device dial' });
  const relay = manual('relay', { fallbackAfterMs: 60_000 });
  const fallbacks: (readonly string[])[] = [];
  const race = racePaths<Stream, Attempt>({
    attempts: [dial.attempt, relay.attempt],
    onFallback: (_a, failures) => fallbacks.push([...failures]),
  });
  t.false(relay.started());
  dial.settle().fail(new Error('refused'));
  await new Promise((r) => setTimeout(r, 10));
  t.true(relay.started());
  t.deepEqual(fallbacks, [['device dial: refused']]);
  relay.settle().win(new Stream('relay'));
  const won = await race;
  t.is(won.attempt.via, 'relay');
  t.deepEqual(won.failures, ['device dial: refused']);
});

test('with a deadline and no winner, the race rejects with the error built from the failures', async (t) => {
  const dial = manual('dial');
  const punch = manual('punch', { label: 'hole punch' });
  const race = racePaths<Stream, Attempt>({
    attempts: [dial.attempt, punch.attempt],
    deadlineMs: 50,
    onDeadline: (failures) => new Error(`nothing came up (${failures.join('; ')})`),
  });
  punch.settle().fail(new Error('timed out'));
  await t.throwsAsync(race, { message: 'nothing came up (hole punch: timed out)' });
  t.true(dial.aborted());
});

test('failures after the race was given up are not reported', async (t) => {
  const dial = manual('dial');
  const outer = new AbortController();
  const reported: string[] = [];
  const race = racePaths<Stream, Attempt>({ attempts: [dial.attempt], signal: outer.signal, onFailure: (a) => reported.push(a.via) });
  outer.abort();
  dial.settle().fail(new Error('aborted'));
  await t.throwsAsync(race);
  t.deepEqual(reported, []);
});
