/**
 * The path race both ends run once the device has accepted a request: every way to meet at once
 * (the device's dial S208, the client's reverse dial, a TCP simultaneous open, the server's relay),
 * the first end-to-end channel wins, the others are cancelled, and one that completes a moment too
 * late is closed, not leaked. The mechanics live here; each side supplies its own attempts (the
 * client accepts or dials, the device dials or is dialled), so neither carries the other's code.
 *
 * A fallback attempt (the device's relay) starts after `fallbackAfterMs`, or at once when every other
 * attempt has settled: nobody waits for a path that cannot come.
 */
import { abortError } from '../common/errors.js';
import { firstFulfilled } from '../common/first-fulfilled.js';
import { followSignal } from '../common/linked-signal.js';

/** dial: the device dialled the client (S208); reverse: the client dialled the device; punch: TCP simultaneous open; relay: via the server. */
export type PathKind = 'lan' | 'dial' | 'punch' | 'reverse' | 'relay';

export interface PathAttempt<S extends { destroy(): void }> {
  readonly via: PathKind;
  /** How a failure is named in the reasons, e.g. "hole punch"; default: `via`. */
  readonly label?: string;
  /** Started only after this long, or once every other attempt has settled. */
  readonly fallbackAfterMs?: number;
  /** Bring the end-to-end channel up; `signal` aborts when another attempt won or the race is given up. */
  start(signal: AbortSignal): Promise<S>;
}

export interface PathRaceOptions<S extends { destroy(): void }, A extends PathAttempt<S>> {
  readonly attempts: readonly A[];
  /** Gives the whole race up (the caller's own signal). */
  readonly signal?: AbortSignal;
  /** With a deadline the race rejects with `onDeadline(failures)` when no attempt has won by then. */
  readonly deadlineMs?: number;
  readonly onDeadline?: (failures: readonly string[]) => Error;
  /** An attempt failed while the race was still on. */
  readonly onFailure?: (attempt: A, err: Error) => void;
  /** A fallback attempt is starting, with the failures so far. */
  readonly onFallback?: (attempt: A, failures: readonly string[]) => void;
}

export interface PathRaceWinner<S, A> {
  readonly stream: S;
  readonly attempt: A;
  /** "label: reason" of every attempt that failed before the race ended. */
  readonly failures: readonly string[];
}

export async function racePaths<S extends { destroy(): void }, A extends PathAttempt<S>>(
  options: PathRaceOptions<S, A>,
): Promise<PathRaceWinner<S, A>> {
  const race = new AbortController();
  // Not AbortSignal.any with the caller's signal: that may live for the whole process (the agent's),
  // and on Node 20 each any() leaves it a WeakRef that is never removed (common/linked-signal.ts).
  const unlink = options.signal ? followSignal(options.signal, race) : () => undefined;
  const signal = race.signal;
  const failures: string[] = [];
  const run = (attempt: A, after?: Promise<void>): Promise<{ stream: S; attempt: A }> =>
    (after ? after.then(() => attempt.start(signal)) : attempt.start(signal)).then(
      (stream) => ({ stream, attempt }),
      (err: unknown): never => {
        if (!signal.aborted) {
          failures.push(`${attempt.label ?? attempt.via}: ${(err as Error).message}`);
          options.onFailure?.(attempt, err as Error);
        }
        throw err;
      },
    );
  const first = options.attempts.filter((a) => a.fallbackAfterMs === undefined).map((a) => run(a));
  const othersSettled = Promise.allSettled(first);
  const fallbacks = options.attempts
    .filter((a) => a.fallbackAfterMs !== undefined)
    .map((a) => run(a, fallbackStart(a, a.fallbackAfterMs!, othersSettled, signal, failures, options.onFallback)));
  const running = [...first, ...fallbacks];
  try {
    const won = await withDeadline(firstFulfilled(running), options.deadlineMs, options.signal, () => options.onDeadline!(failures));
    // A channel that came up a moment too late is closed, not leaked.
    for (const r of running)
      void r.then(
        (o) => o !== won && o.stream.destroy(),
        () => undefined,
      );
    return { ...won, failures };
  } finally {
    race.abort();
    unlink();
  }
}

/** Resolves when the fallback may start: after `afterMs`, or once the others have settled. */
function fallbackStart<A>(
  attempt: A,
  afterMs: number,
  othersSettled: Promise<unknown>,
  signal: AbortSignal,
  failures: readonly string[],
  onFallback: ((attempt: A, failures: readonly string[]) => void) | undefined,
): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, afterMs);
    void othersSettled.then(() => {
      clearTimeout(timer);
      resolve();
    });
    signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  }).then(() => {
    if (signal.aborted) throw abortError(signal);
    onFallback?.(attempt, failures);
  });
}

/** `p`, or `onTimeout()` after `ms` (no deadline when `ms` is undefined), or the abort of `signal`. */
export function withDeadline<T>(
  p: Promise<T>,
  ms: number | undefined,
  signal: AbortSignal | undefined,
  onTimeout: () => Error,
): Promise<T> {
  if (ms === undefined) return p;
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => finish(() => reject(onTimeout())), ms);
    const onAbort = (): void => finish(() => reject(abortError(signal!)));
    signal?.addEventListener('abort', onAbort, { once: true });
    function finish(f: () => void): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      f();
    }
    p.then(
      (v) => finish(() => resolve(v)),
      (e) => finish(() => reject(e)),
    );
  });
}
