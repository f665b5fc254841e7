/** Wall-clock source, injected so tests can skew a component's clock without patching globals. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = Object.freeze({ now: () => Date.now() });

/** A clock offset from the system clock by `offsetMs` (tests of freshness and skew). */
export function offsetClock(offsetMs: number): Clock {
  return Object.freeze({ now: () => Date.now() + offsetMs });
}
