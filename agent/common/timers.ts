/**
 * The time source components schedule with: wall time plus timers and sleep. Injected (option
 * `timers`, default `systemTimers`) so a spec can drive a component's intervals and deadlines
 * with a manual clock (test/helpers/manual-clock.ts) instead of waiting on the real one.
 * `Clock` (clock.ts) stays the narrower "what time is it" for code that only reads the time.
 */
import { abortError } from './errors.js';
import type { Clock } from './clock.js';

/** A scheduled callback; unref() lets the process exit while it is pending (Node's Timeout has this shape). */
export interface TimerHandle {
  unref(): TimerHandle;
  ref(): TimerHandle;
  hasRef(): boolean;
}

export interface Timers extends Clock {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timeout or an interval; undefined and already-fired handles are ignored. */
  clearTimeout(handle: TimerHandle | undefined): void;
  clearInterval(handle: TimerHandle | undefined): void;
  /** Resolves after `ms`; rejects with PEERLINK_ERR_ABORTED as soon as `signal` aborts. Holds the process (ref'd). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** sleep() over any setTimeout/clearTimeout pair, so the real and the manual clock abort alike. */
export function sleepWith(timers: Pick<Timers, 'setTimeout' | 'clearTimeout'>, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      timers.clearTimeout(handle);
      reject(abortError(signal as AbortSignal));
    };
    const handle = timers.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Node's own timers and Date.now(). */
export const systemTimers: Timers = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn: () => void, ms: number): TimerHandle => setTimeout(fn, ms),
  setInterval: (fn: () => void, ms: number): TimerHandle => setInterval(fn, ms),
  clearTimeout: (h: TimerHandle | undefined) => clearTimeout(h as NodeJS.Timeout | undefined),
  clearInterval: (h: TimerHandle | undefined) => clearInterval(h as NodeJS.Timeout | undefined),
  sleep: (ms: number, signal?: AbortSignal) => sleepWith(systemTimers, ms, signal),
});
