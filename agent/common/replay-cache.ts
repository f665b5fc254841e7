/**
 * Nonces already used (requests at the device, P3; probes at the server, P6), each kept until
 * its packet could no longer be fresh.
 * Bounded: when full it refuses new requests (fail closed) rather than forget a live nonce.
 * Expired entries are also swept at most every PRUNE_EVERY_MS (amortised: one pass over what is
 * kept), so the map holds about a freshness window's worth of nonces, not everything up to the cap
 * (the soak: a device serving a request every few seconds grew it by two entries per request).
 */
export const REPLAY_CACHE_MAX_ENTRIES = 10_000;
export const REPLAY_CACHE_PRUNE_EVERY_MS = 60_000;

export class ReplayCache {
  private readonly seen = new Map<string, number>();
  private prunedAtMs = -Infinity;
  constructor(private readonly maxEntries = REPLAY_CACHE_MAX_ENTRIES) {}

  /** 'fresh' and remembered, 'replayed', or 'full'. */
  check(nonce: Uint8Array, expiresAtMs: number, nowMs: number): 'fresh' | 'replayed' | 'full' {
    const key = Buffer.from(nonce).toString('hex');
    const exp = this.seen.get(key);
    if (exp !== undefined && exp >= nowMs) return 'replayed';
    // Either way round: the time given is the server's, which may step back.
    if (this.seen.size >= this.maxEntries || Math.abs(nowMs - this.prunedAtMs) >= REPLAY_CACHE_PRUNE_EVERY_MS) this.prune(nowMs);
    if (this.seen.size >= this.maxEntries) return 'full';
    this.seen.set(key, expiresAtMs);
    return 'fresh';
  }

  prune(nowMs: number): void {
    this.prunedAtMs = nowMs;
    for (const [k, exp] of this.seen) if (exp < nowMs) this.seen.delete(k);
  }

  get size(): number {
    return this.seen.size;
  }
}
