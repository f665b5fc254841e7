/**
 * The client's memory of how its last connection to a device went (issue 15): when every direct
 * attempt failed and the relay carried it, the next request from the same local address says so
 * (PathHint.DIRECT_FAILED_BEFORE) and the device starts the relay at once instead of giving the
 * direct paths their head start again.
 *
 * Bounded: at most PATH_MEMORY_MAX_ENTRIES (oldest dropped first), each trusted for
 * PATH_MEMORY_TTL_MS from when the direct paths were seen failing. A connection relayed at once
 * (the hint was sent) does not renew it, so after the TTL the whole race runs again and a network
 * that changed is noticed; a direct win forgets it at once.
 */

export const PATH_MEMORY_MAX_ENTRIES = 64;
export const PATH_MEMORY_TTL_MS = 10 * 60_000;

export interface PathMemory {
  /** Every direct path failed last time (within the TTL) for this device from this local address. */
  directFailed(equipmentId: string, localAddress: string, nowMs: number): boolean;
  /**
   * How a race ended. `rushed`: the hint was sent, so the relay started at once and the direct paths
   * had no head start; such a win says nothing new. A relay win without it means no direct path came
   * up in the head start (relay_after_ms) or all of them failed before.
   */
  record(equipmentId: string, localAddress: string, o: { readonly relayed: boolean; readonly rushed: boolean }, nowMs: number): void;
  readonly size: number;
}

export function createPathMemory(o: { maxEntries?: number; ttlMs?: number } = {}): PathMemory {
  const maxEntries = o.maxEntries ?? PATH_MEMORY_MAX_ENTRIES;
  const ttlMs = o.ttlMs ?? PATH_MEMORY_TTL_MS;
  // Insertion order is age order: a Map keeps it, and re-setting moves an entry to the end.
  const failedAt = new Map<string, number>();
  const key = (id: string, local: string): string => `${id}\u0000${local}`;
  return {
    get size() {
      return failedAt.size;
    },
    directFailed(id, local, nowMs) {
      const k = key(id, local);
      const at = failedAt.get(k);
      if (at === undefined) return false;
      if (nowMs - at < ttlMs) return true;
      failedAt.delete(k);
      return false;
    },
    record(id, local, r, nowMs) {
      const k = key(id, local);
      if (!r.relayed) return void failedAt.delete(k);
      if (r.rushed) return;
      failedAt.delete(k);
      failedAt.set(k, nowMs);
      while (failedAt.size > maxEntries) failedAt.delete(failedAt.keys().next().value!);
    },
  };
}
