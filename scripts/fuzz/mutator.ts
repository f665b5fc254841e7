/**
 * The fast mutator: writes a mutant of a seed packet into a caller's scratch buffer and returns its
 * length. No allocation per packet (copies, in-place byte flips, garbage copied from the random
 * pool), so a million packets cost seconds, not minutes. fast-check is for the codec specs; this
 * is for volume against the running programs.
 */
import type { Rng } from './rng.js';
import type { Seed } from './seeds.js';

/** How each mutant is made; the names appear in the report's per-strategy counts. */
export const STRATEGIES = ['verbatim', 'flip', 'truncate', 'oversize', 'wrongType', 'lengthOff', 'retag', 'random'] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** Relative weights, in STRATEGIES order: mostly near-valid packets, which reach deepest into the parsers. */
const WEIGHTS: readonly number[] = [3, 30, 12, 10, 10, 12, 13, 10];
const MAX_FLIPS = 4;
const MAX_LENGTH_DELTA = 3;

export interface MutatorOptions {
  readonly rng: Rng;
  /** The largest mutant (an oversize one goes up to here); the scratch buffers must hold it. */
  readonly maxBytes: number;
}

export interface Mutator {
  /** Write a mutant of `seed` into `out`; returns its length and counts the strategy. */
  mutate(seed: Seed, out: Buffer): number;
  /** Mutants made so far, by strategy. */
  counts(): Readonly<Record<Strategy, number>>;
}

export function createMutator(input: MutatorOptions): Mutator {
  const o = Object.freeze({ rng: input.rng, maxBytes: input.maxBytes });
  if (!Number.isInteger(o.maxBytes) || o.maxBytes < 1) throw new RangeError(`maxBytes: expected a positive integer, found ${o.maxBytes}`);
  const { rng } = o;
  const tally = new Array<number>(STRATEGIES.length).fill(0);
  const cumulative: number[] = [];
  WEIGHTS.reduce((sum, w, i) => (cumulative[i] = sum + w), 0);
  const total = cumulative[cumulative.length - 1]!;

  function pick(): number {
    const r = rng.below(total);
    let i = 0;
    while (r >= cumulative[i]!) i++;
    return i;
  }

  /** Flip 1..MAX_FLIPS bytes in [0, len), avoiding the seed's protected range (see Seed.frozen). */
  function flip(seed: Seed, out: Buffer, len: number): void {
    const flips = 1 + rng.below(MAX_FLIPS);
    for (let k = 0; k < flips; k++) {
      let at = rng.below(len);
      if (seed.frozen && at >= seed.frozen[0] && at < seed.frozen[1]) at = seed.frozen[0] > 0 ? seed.frozen[0] - 1 : seed.frozen[1] % len;
      out[at] = out[at]! ^ (1 + rng.below(255));
    }
  }

  function mutate(seed: Seed, out: Buffer): number {
    const s = seed.bytes;
    const strategy = pick();
    tally[strategy]!++;
    switch (STRATEGIES[strategy]) {
      case 'verbatim':
        return s.copy(out, 0, 0, Math.min(s.length, o.maxBytes));
      case 'flip': {
        const len = s.copy(out, 0, 0, Math.min(s.length, o.maxBytes));
        if (len > 0) flip({ ...seed, frozen: undefined }, out, len);
        return len;
      }
      case 'truncate':
        return s.copy(out, 0, 0, rng.below(Math.min(s.length, o.maxBytes)));
      case 'oversize': {
        const len = s.copy(out, 0, 0, Math.min(s.length, o.maxBytes));
        const extra = 1 + rng.below(Math.max(1, o.maxBytes - len));
        return len + rng.bytes(Math.min(extra, o.maxBytes - len)).copy(out, len);
      }
      case 'wrongType': {
        const len = s.copy(out, 0, 0, Math.min(s.length, o.maxBytes));
        if (seed.typeOffset !== undefined && seed.typeOffset < len) out[seed.typeOffset] = out[seed.typeOffset]! ^ (1 + rng.below(255));
        return len;
      }
      case 'lengthOff': {
        const len = s.copy(out, 0, 0, Math.min(s.length, o.maxBytes));
        const field = seed.lengthFields[rng.below(seed.lengthFields.length)];
        if (!field || field.offset + field.size > len) return len;
        const delta = (1 + rng.below(MAX_LENGTH_DELTA)) * (rng.below(2) === 0 ? -1 : 1);
        if (field.size === 1) out[field.offset] = (out[field.offset]! + delta) & 0xff;
        else out.writeUInt16BE((out.readUInt16BE(field.offset) + delta) & 0xffff, field.offset);
        return len;
      }
      case 'retag': {
        // Wrong contents under a tag that verifies: only the tag check stands between them and the parser's logic.
        const len = s.copy(out, 0, 0, Math.min(s.length, o.maxBytes));
        if (!seed.retag) {
          flip(seed, out, len);
          return len;
        }
        flip(seed, out, Math.max(1, len - seed.retag.tagBytes));
        seed.retag.sign(out, len);
        return len;
      }
      case 'random':
      default:
        return rng.bytes(rng.below(o.maxBytes + 1)).copy(out);
    }
  }

  return Object.freeze({
    mutate,
    counts: () => Object.freeze(Object.fromEntries(STRATEGIES.map((n, i) => [n, tally[i]!]))) as Record<Strategy, number>,
  });
}
