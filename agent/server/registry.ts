/**
 * The equipment information list (patent Fig. 9): equipment ID -> the public address and port
 * its registrations arrive from (the NAT's mapping), when it was last heard, the newest
 * registration timestamp accepted (so an old registration cannot be replayed, P1), and — with
 * several server nodes — which node's UDP socket the device registered with (its NAT lets only
 * that address's notifications in).
 *
 * Two backends behind one interface (`RegistryBackend`): this in-memory one (the default, no
 * dependencies) and Redis (`redis-registry.ts`), for a fleet of server nodes. The interface is
 * async-capable (`MaybePromise`): the in-memory backend answers synchronously so the UDP hot path
 * pays no promise per packet.
 *
 * Memory: a fleet server holds millions of entries, so the in-memory backend keeps no object or
 * string per entry (compact-registry.ts).
 */
import { CompactRegistry } from './compact-registry.js';

export interface RegistryEntry {
  readonly address: string;
  readonly port: number;
  readonly lastSeenMs: number;
  readonly lastTimestampMs: number;
  /** The server node that holds the mapping; undefined: this node (single-node or local list). */
  readonly node?: string;
  /**
   * Local list of a node sharing the registry: when this node last wrote the entry to the shared
   * list (write on change, registration-endpoint.ts); undefined: not written (or not since Redis
   * was lost). Never stored in Redis.
   */
  readonly sharedAtMs?: number;
  /** The generation of the device identity that registered (identity-name.ts); absent: 0. */
  readonly generation?: number;
  /**
   * Shared list only: `lastSeenMs` is the device's last registration, not a write up to the
   * refresh period older (its holder marked it stale, redis-registry.ts): no `lastSeenSlackMs`.
   */
  readonly lastSeenExact?: boolean;
}

export type MaybePromise<T> = T | Promise<T>;

/** What `record` did: a registration is accepted only when newer than the last accepted one. */
export type RecordResult =
  | {
      readonly outcome: 'accepted';
      /** A new device, or its mapping (address or port) changed. */
      readonly moved: boolean;
      /** The entry before, when it moved from one (undefined otherwise, to spare the hot path). */
      readonly previous: RegistryEntry | undefined;
    }
  | { readonly outcome: 'replayed' }
  /**
   * Shared list only: another node holds the device and keeps its entry fresh, and the timestamp is
   * not newer than anything that node may have accepted without writing (redis-registry.ts): not
   * written; the device keeps registering and is taken over once that is no longer so.
   */
  | { readonly outcome: 'held' }
  /** New or moved, and the caller had not verified the new mapping (`record(…, false)`): nothing written. */
  | { readonly outcome: 'unverified' };

/** The interface the server's components use; both backends implement it. */
export interface RegistryBackend {
  readonly kind: 'memory' | 'redis';
  lookup(equipmentId: string): MaybePromise<RegistryEntry | undefined>;
  /**
   * Store the entry unless its registration timestamp is not newer than the stored one (atomic).
   * With `mayMove` false a new or moved mapping is not stored ('unverified'): the caller has not
   * yet checked that the new source receives (cookie-jar.ts). The shared (Redis) list is only
   * written after that check, so it always moves.
   */
  record(equipmentId: string, entry: RegistryEntry, mayMove?: boolean): MaybePromise<RecordResult>;
  /**
   * How much older than the device's last registration an entry's `lastSeenMs` may be while the
   * device keeps registering (the shared list is written on change: its refresh period); 0 if absent.
   */
  readonly lastSeenSlackMs?: number;
  /** Remove entries not heard from since `olderThanMs` (Redis expires them by itself: 0). */
  sweep(olderThanMs: number): MaybePromise<number>;
}

/** The synchronous, node-local list (also the local cache of the Redis backend). */
export interface Registry extends RegistryBackend {
  get(equipmentId: string): RegistryEntry | undefined;
  set(equipmentId: string, entry: RegistryEntry): void;
  delete(equipmentId: string): boolean;
  /** Entries: one per mapping, so a dual-stack device counts twice (family-key.ts). */
  readonly size: number;
  /** Devices: entries, less the IPv6 mappings of devices that have an IPv4 one too. */
  readonly devices: number;
  entries(): IterableIterator<[string, RegistryEntry]>;
  /**
   * Up to `max` entries written to the shared list (`sharedAtMs` set) and not heard from since
   * `olderThanMs`: the devices a node marks stale there (redis-registry.ts). Reads the arrays
   * directly, building only what it returns (it runs every few seconds over every entry).
   */
  staleShared(olderThanMs: number, max: number): [string, RegistryEntry][];
  sweep(olderThanMs: number): number;
  lookup(equipmentId: string): RegistryEntry | undefined;
  record(equipmentId: string, entry: RegistryEntry, mayMove?: boolean): LocalRecordResult;
  /**
   * Write on change's fast path, one lookup and no object: if the entry is this node's own
   * (no `node`), at the same address, port and generation, newer than the stored timestamp, and
   * last written to the shared list after `freshAfterMs` and at or after `validSinceMs`, store
   * the new times (keeping when it was written) and answer 'touched'. 'replayed': the stored
   * timestamp is not older. 'other': none of that holds; nothing changed (the caller takes the
   * full path).
   */
  touchShared(equipmentId: string, entry: RegistryEntry, freshAfterMs: number, validSinceMs: number): TouchResult;
}

export type TouchResult = 'touched' | 'replayed' | 'other';

/** What this node's own list answers: it holds no other node's devices, so never 'held'. */
export type LocalRecordResult = Exclude<RecordResult, { readonly outcome: 'held' }>;

export function createMemoryRegistry(): Registry {
  return new CompactRegistry();
}
