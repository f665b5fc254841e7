/**
 * Nonces already used (requests at the device, P3; probes at the server, P6), each kept until
 * its packet could no longer be fresh.
 * Bounded: when full it refuses new requests (fail closed) rather than forget a live nonce.
 */
export const REPLAY_CACHE_MAX_ENTRIES = 10_000;

export class ReplayCache {
  private readonly seen = new Map<string, number>();
  constructor(private readonly maxEntries = REPLAY_CACHE_MAX_ENTRIES) {}

  /** 'fresh' and remembered, 'replayed', or 'full'. */
  check(nonce: Uint8Array, expiresAtMs: number, nowMs: number): 'fresh' | 'replayed' | 'full' {
    const key = Buffer.from(nonce).toString('hex');
    const exp = this.seen.get(key);
    if (exp !== undefined && exp >= nowMs) return 'replayed';
    if (this.seen.size >= this.maxEntries) this.prune(nowMs);
    if (this.seen.size >= this.maxEntries) return 'full';
    this.seen.set(key, expiresAtMs);
    return 'fresh';
  }

  prune(nowMs: number): void {
    for (const [k, exp] of this.seen) if (exp < nowMs) this.seen.delete(k);
  }

  get size(): number {
    return this.seen.size;
  }
}
