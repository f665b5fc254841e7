/**
 * The equipment information list (patent Fig. 9): equipment ID -> the public address and port
 * its registrations arrive from (the NAT's mapping), when it was last heard, and the newest
 * registration timestamp accepted (so an old registration cannot be replayed, P1).
 */
export interface RegistryEntry {
  readonly address: string;
  readonly port: number;
  readonly lastSeenMs: number;
  readonly lastTimestampMs: number;
}

export interface Registry {
  get(equipmentId: string): RegistryEntry | undefined;
  set(equipmentId: string, entry: RegistryEntry): void;
  delete(equipmentId: string): boolean;
  readonly size: number;
  entries(): IterableIterator<[string, RegistryEntry]>;
  /** Remove entries not heard from since `olderThanMs`; returns how many went. */
  sweep(olderThanMs: number): number;
}

export function createMemoryRegistry(): Registry {
  const map = new Map<string, RegistryEntry>();
  return {
    get: (id) => map.get(id),
    set: (id, entry) => void map.set(id, entry),
    delete: (id) => map.delete(id),
    get size() {
      return map.size;
    },
    entries: () => map.entries(),
    sweep(olderThanMs) {
      let n = 0;
      for (const [id, e] of map) {
        if (e.lastSeenMs < olderThanMs) {
          map.delete(id);
          n++;
        }
      }
      return n;
    },
  };
}
