/**
 * Rate limits keyed by source address or target equipment ID: GCRA (a token bucket kept as one
 * number per key, the "theoretical arrival time"), so a million keys cost a Map of numbers.
 * The table is bounded: past `maxKeys` the oldest key is forgotten (it gets a fresh bucket).
 */
import { isIPv6 } from 'node:net';
import type { Clock } from '../common/clock.js';
import { ipv6Bytes, normalizeAddress } from '../protocol/address.js';

export interface RateLimit {
  /** Sustained events per second; 0 disables the limit. */
  readonly perSecond: number;
  /** Events allowed at once above the sustained rate. */
  readonly burst: number;
}

export const RATE_LIMITER_MAX_KEYS = 200_000;

export interface RateLimiter {
  /** True if the event is allowed (and counted). */
  take(key: string): boolean;
  /** True if `take` would allow the event now; counts nothing. */
  peek(key: string): boolean;
  readonly limit: RateLimit;
  readonly enabled: boolean;
}

export function createRateLimiter(limit: RateLimit, clock: Clock, maxKeys = RATE_LIMITER_MAX_KEYS): RateLimiter {
  const enabled = limit.perSecond > 0;
  const intervalMs = enabled ? 1000 / limit.perSecond : 0;
  const toleranceMs = intervalMs * Math.max(1, limit.burst);
  const tat = new Map<string, number>();
  return {
    limit: Object.freeze({ ...limit }),
    enabled,
    peek(key) {
      if (!enabled) return true;
      const now = clock.now();
      const t = Math.max(tat.get(key) ?? now, now);
      return t + intervalMs - now <= toleranceMs;
    },
    take(key) {
      if (!enabled) return true;
      const now = clock.now();
      const t = Math.max(tat.get(key) ?? now, now);
      if (t + intervalMs - now > toleranceMs) return false;
      // Re-insert so the Map's order is least-recently-used first.
      tat.delete(key);
      tat.set(key, t + intervalMs);
      if (tat.size > maxKeys) tat.delete(tat.keys().next().value as string);
      return true;
    },
  };
}

/**
 * The key a source address is limited by: the address itself for IPv4, its /64 for IPv6 (one
 * subscriber's prefix, from which an attacker could otherwise draw 2^64 fresh buckets).
 */
export function sourceKey(address: string): string {
  const a = normalizeAddress(address);
  if (!isIPv6(a)) return a;
  const b = ipv6Bytes(a.replace(/%.*$/, ''));
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return `${groups.join(':')}::/64`;
}
