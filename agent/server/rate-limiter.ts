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
  // No ':' : IPv4 (the common case, on every registration's path), returned as it is.
  if (address.indexOf(':') < 0) return address;
  const a = normalizeAddress(address);
  if (!isIPv6(a)) return a;
  const b = ipv6Bytes(a.replace(/%.*$/, ''));
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return `${groups.join(':')}::/64`;
}

/** What a fleet-wide limiter needs of the shared store (the Redis registry's `limit`). */
export interface SharedLimitStore {
  readonly up: boolean;
  limit(name: string, key: string, intervalMs: number, toleranceMs: number, charge: boolean): Promise<boolean>;
}

/** A limit enforced across every node of the fleet: one atomic Redis round trip per check. */
export interface SharedRateLimiter extends RateLimiter {
  /** Fleet-wide `take`; this node's own bucket answers while Redis is away (and is charged always). */
  takeShared(key: string): Promise<boolean>;
  peekShared(key: string): Promise<boolean>;
  /** Checks answered by this node's own bucket because Redis was away or failed. */
  readonly localFallbacks: number;
}

/**
 * Wraps this node's limiter: checks go to Redis (GCRA in Lua on one key, so every node shares the
 * bucket), with the node's own bucket as the fallback while Redis is away. The synchronous `take`
 * (a charge whose answer nobody waits for, as the broker charges a device when it attaches, P9)
 * charges both, the shared one without waiting.
 */
export function createSharedRateLimiter(name: string, local: RateLimiter, store: SharedLimitStore): SharedRateLimiter {
  const intervalMs = local.enabled ? 1000 / local.limit.perSecond : 0;
  const toleranceMs = intervalMs * Math.max(1, local.limit.burst);
  let localFallbacks = 0;
  const shared = async (key: string, charge: boolean): Promise<boolean> => {
    const mine = charge ? local.take(key) : local.peek(key);
    if (!local.enabled) return true;
    if (!store.up) {
      localFallbacks++;
      return mine;
    }
    try {
      return await store.limit(name, key, intervalMs, toleranceMs, charge);
    } catch {
      localFallbacks++;
      return mine;
    }
  };
  return {
    limit: local.limit,
    enabled: local.enabled,
    peek: (key) => local.peek(key),
    take(key) {
      if (local.enabled && store.up) void store.limit(name, key, intervalMs, toleranceMs, true).catch(() => undefined);
      return local.take(key);
    },
    takeShared: (key) => shared(key, true),
    peekShared: (key) => shared(key, false),
    get localFallbacks() {
      return localFallbacks;
    },
  };
}

/** `takeShared`/`peekShared` when the limiter is fleet-wide, else this node's own answer. */
export async function takeLimit(l: RateLimiter, key: string): Promise<boolean> {
  return 'takeShared' in l ? (l as SharedRateLimiter).takeShared(key) : l.take(key);
}
export async function peekLimit(l: RateLimiter, key: string): Promise<boolean> {
  return 'peekShared' in l ? (l as SharedRateLimiter).peekShared(key) : l.peek(key);
}
