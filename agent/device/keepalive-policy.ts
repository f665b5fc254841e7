/**
 * Adaptive keepalive: learn the longest idle interval the NAT keeps the registration's UDP
 * mapping for, and refresh just inside it, within [min, max] (min never below 15 s, RFC 8085).
 *
 * Pure logic, fed with outcomes: "after idling `idleMs`, the mapping was alive / lost". Learning
 * doubles the interval from the minimum until a loss, then halves the gap between the longest
 * interval known to survive (`good`) and the shortest known to fail (`bad`) until it is within
 * RESOLUTION (10 %, at least 1 s); then it operates at `good`, re-testing every
 * CHECK_EVERY_ROUNDS rounds. A loss at an interval that used to survive (the router changed, or
 * a new one) falls back at once to the minimum and learns again.
 */

/** RFC 8085 3.1.1: keepalives no more often than every 15 s. */
export const KEEPALIVE_MIN_INTERVAL_FLOOR_MS = 15_000;
/** Learning stops when good and bad are this close (relative). */
export const RESOLUTION_FRACTION = 0.1;
export const RESOLUTION_MIN_MS = 1_000;
/** Once learnt, one round in this many is checked (a router may change its timeout, or be replaced). */
export const CHECK_EVERY_ROUNDS = 10;

export interface KeepaliveBounds {
  readonly minIntervalMs: number;
  readonly maxIntervalMs: number;
}

export interface KeepaliveState {
  readonly phase: 'learning' | 'learnt';
  /** Longest idle interval seen to keep the mapping. */
  readonly goodMs: number;
  /** Shortest idle interval seen to lose it (null: none yet). */
  readonly badMs: number | null;
  readonly nextIntervalMs: number;
}

export interface KeepalivePolicy {
  /** The idle interval before the next refresh. */
  nextIntervalMs(): number;
  /** Called once per round, when the refresh is due: whether to test the mapping first. */
  roundWantsCheck(): boolean;
  /** The outcome of a round that idled `idleMs`. */
  record(idleMs: number, alive: boolean): void;
  state(): KeepaliveState;
}

export function createKeepalivePolicy(bounds: KeepaliveBounds): KeepalivePolicy {
  const min = bounds.minIntervalMs;
  const max = bounds.maxIntervalMs;
  if (!(Number.isInteger(min) && Number.isInteger(max) && min > 0 && max >= min)) {
    throw new RangeError(`keepalive bounds: need 0 < min <= max, found min ${min}, max ${max}`);
  }
  let good = min;
  let bad: number | null = null;
  let roundsSinceCheck = 0;

  const learnt = (): boolean => {
    if (good >= max) return true;
    if (bad === null) return false;
    return bad - good <= Math.max(RESOLUTION_MIN_MS, good * RESOLUTION_FRACTION);
  };
  const next = (): number => {
    if (learnt()) return good;
    if (bad === null) return Math.min(max, good * 2);
    return Math.round((good + bad) / 2);
  };

  return {
    nextIntervalMs: next,
    roundWantsCheck() {
      if (!learnt() || roundsSinceCheck + 1 >= CHECK_EVERY_ROUNDS) return true;
      roundsSinceCheck++;
      return false;
    },
    record(idleMs, alive) {
      roundsSinceCheck = 0;
      if (alive) {
        if (idleMs > good) good = Math.min(max, idleMs);
        if (bad !== null && bad <= good) bad = null; // the router keeps it longer than we thought
        return;
      }
      if (idleMs <= good) {
        // What used to survive does not any more: fall back fast and learn again.
        good = min;
        bad = idleMs > min ? idleMs : null;
        return;
      }
      bad = bad === null ? idleMs : Math.min(bad, idleMs);
    },
    state: () => ({ phase: learnt() ? 'learnt' : 'learning', goodMs: good, badMs: bad, nextIntervalMs: next() }),
  };
}
