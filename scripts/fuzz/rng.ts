/**
 * A seeded, fast pseudo-random source for the fuzzer: xorshift32 for choices, and a pool of
 * random bytes filled once, from which garbage is copied (a per-byte PRNG call would cost more
 * than sending the packet). Seeded so that a run can be repeated with `--seed`.
 */
import { randomFillSync } from 'node:crypto';

/** Enough distinct garbage that copies from random offsets do not visibly repeat. */
export const RANDOM_POOL_BYTES = 1 << 20;

export interface Rng {
  readonly seed: number;
  /** A uniform integer in [0, 2^32). */
  next(): number;
  /** A uniform integer in [0, n). */
  below(n: number): number;
  /** `length` random bytes: a view into the pool, valid until the pool is refilled (never, here). */
  bytes(length: number): Buffer;
}

export function createRng(seed: number): Rng {
  if (!Number.isInteger(seed) || seed <= 0 || seed > 0xffffffff)
    throw new RangeError(`seed: expected an integer in 1..2^32-1, found ${seed}`);
  let state = seed >>> 0;
  const pool = Buffer.allocUnsafe(RANDOM_POOL_BYTES);
  randomFillSync(pool);
  const next = (): number => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  return Object.freeze({
    seed,
    next,
    below: (n: number) => (n <= 1 ? 0 : next() % n),
    bytes(length: number) {
      if (length > RANDOM_POOL_BYTES) throw new RangeError(`at most ${RANDOM_POOL_BYTES} random bytes at once`);
      const at = next() % (RANDOM_POOL_BYTES - length + 1);
      return pool.subarray(at, at + length);
    },
  });
}
