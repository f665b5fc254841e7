/** Wall-clock source, injected so tests can skew a component's clock without patching globals. */
export interface Clock {
  now(): number;
}

/**
 * PEERLINK_CLOCK_OFFSET_MS (test-only, integer ms): shifts the default clock of a whole program, so
 * the fault specs (test/faults/clock-skew.spec.ts) can run the real server or agent with a clock an
 * hour or five minutes off without changing the machine's clock, which every other process shares.
 * Unset (as in production) it is 0; anything but an integer within a day is refused at start.
 */
function envOffsetMs(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.PEERLINK_CLOCK_OFFSET_MS;
  if (text === undefined || text === '') return 0;
  const ms = Number(text);
  if (!Number.isInteger(ms) || Math.abs(ms) > 86_400_000)
    throw new RangeError(`PEERLINK_CLOCK_OFFSET_MS: expected an integer of milliseconds within ±86400000, found ${JSON.stringify(text)}`);
  return ms;
}

const ENV_OFFSET_MS = envOffsetMs();

export const systemClock: Clock = Object.freeze(
  ENV_OFFSET_MS === 0 ? { now: () => Date.now() } : { now: () => Date.now() + ENV_OFFSET_MS },
);

/** A clock offset from the system clock by `offsetMs` (tests of freshness and skew). */
export function offsetClock(offsetMs: number): Clock {
  return Object.freeze({ now: () => Date.now() + offsetMs });
}
