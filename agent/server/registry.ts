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
 * Memory: a fleet server holds millions of entries, so an entry is not an object. The ID maps to
 * a slot number; the slot's fields live in typed arrays (IPv4 as a u32, port u16, two f64 times):
 * about 100 bytes per device in all, against ~274 for a Map of objects (see `npm run bench -- server`).
 */
import { isIPv4 } from 'node:net';

export interface RegistryEntry {
  readonly address: string;
  readonly port: number;
  readonly lastSeenMs: number;
  readonly lastTimestampMs: number;
  /** The server node that holds the mapping; undefined: this node (single-node or local list). */
  readonly node?: string;
}

export type MaybePromise<T> = T | Promise<T>;

/** What `record` did: a registration is accepted only when newer than the last accepted one. */
export type RecordResult =
  | { readonly outcome: 'accepted'; readonly previous: RegistryEntry | undefined }
  | { readonly outcome: 'replayed' };

/** The interface the server's components use; both backends implement it. */
export interface RegistryBackend {
  readonly kind: 'memory' | 'redis';
  lookup(equipmentId: string): MaybePromise<RegistryEntry | undefined>;
  /** Store the entry unless its registration timestamp is not newer than the stored one (atomic). */
  record(equipmentId: string, entry: RegistryEntry): MaybePromise<RecordResult>;
  /** Remove entries not heard from since `olderThanMs` (Redis expires them by itself: 0). */
  sweep(olderThanMs: number): MaybePromise<number>;
}

/** The synchronous, node-local list (also the local cache of the Redis backend). */
export interface Registry extends RegistryBackend {
  get(equipmentId: string): RegistryEntry | undefined;
  set(equipmentId: string, entry: RegistryEntry): void;
  delete(equipmentId: string): boolean;
  readonly size: number;
  entries(): IterableIterator<[string, RegistryEntry]>;
  sweep(olderThanMs: number): number;
  lookup(equipmentId: string): RegistryEntry | undefined;
  record(equipmentId: string, entry: RegistryEntry): RecordResult;
}

const INITIAL_SLOTS = 1024;

function ipv4ToU32(a: string): number {
  let n = 0;
  let part = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + part;
      part = 0;
    } else part = part * 10 + (c - 48);
  }
  return n * 256 + part;
}

function u32ToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

class CompactRegistry implements Registry {
  readonly kind = 'memory' as const;
  private readonly slotOf = new Map<string, number>();
  /** Addresses that are not IPv4 (rare: IPv6 devices), by slot. */
  private readonly otherAddress = new Map<number, string>();
  /** Node IDs by slot, only when an entry names another node (tests, tools). */
  private readonly nodeOf = new Map<number, string>();
  private free: number[] = [];
  private next = 0;
  private addr = new Uint32Array(INITIAL_SLOTS);
  private port = new Uint16Array(INITIAL_SLOTS);
  private seen = new Float64Array(INITIAL_SLOTS);
  private stamp = new Float64Array(INITIAL_SLOTS);

  get size(): number {
    return this.slotOf.size;
  }

  private grow(): void {
    const n = Math.ceil(this.addr.length * 1.5);
    const a = new Uint32Array(n);
    a.set(this.addr);
    const p = new Uint16Array(n);
    p.set(this.port);
    const s = new Float64Array(n);
    s.set(this.seen);
    const t = new Float64Array(n);
    t.set(this.stamp);
    this.addr = a;
    this.port = p;
    this.seen = s;
    this.stamp = t;
  }

  private read(slot: number): RegistryEntry {
    const other = this.otherAddress.get(slot);
    const node = this.nodeOf.get(slot);
    const e = {
      address: other ?? u32ToIpv4(this.addr[slot]!),
      port: this.port[slot]!,
      lastSeenMs: this.seen[slot]!,
      lastTimestampMs: this.stamp[slot]!,
    };
    return node === undefined ? e : { ...e, node };
  }

  get(id: string): RegistryEntry | undefined {
    const slot = this.slotOf.get(id);
    return slot === undefined ? undefined : this.read(slot);
  }

  lookup(id: string): RegistryEntry | undefined {
    return this.get(id);
  }

  set(id: string, e: RegistryEntry): void {
    let slot = this.slotOf.get(id);
    if (slot === undefined) {
      slot = this.free.pop();
      if (slot === undefined) {
        if (this.next === this.addr.length) this.grow();
        slot = this.next++;
      }
      this.slotOf.set(id, slot);
    }
    if (isIPv4(e.address)) {
      this.addr[slot] = ipv4ToU32(e.address);
      this.otherAddress.delete(slot);
    } else this.otherAddress.set(slot, e.address);
    this.port[slot] = e.port;
    this.seen[slot] = e.lastSeenMs;
    this.stamp[slot] = e.lastTimestampMs;
    if (e.node === undefined) this.nodeOf.delete(slot);
    else this.nodeOf.set(slot, e.node);
  }

  record(id: string, e: RegistryEntry): RecordResult {
    const slot = this.slotOf.get(id);
    if (slot !== undefined && e.lastTimestampMs <= this.stamp[slot]!) return { outcome: 'replayed' };
    const previous = slot === undefined ? undefined : this.read(slot);
    this.set(id, e);
    return { outcome: 'accepted', previous };
  }

  delete(id: string): boolean {
    const slot = this.slotOf.get(id);
    if (slot === undefined) return false;
    this.slotOf.delete(id);
    this.otherAddress.delete(slot);
    this.nodeOf.delete(slot);
    this.free.push(slot);
    return true;
  }

  *entries(): IterableIterator<[string, RegistryEntry]> {
    for (const [id, slot] of this.slotOf) yield [id, this.read(slot)];
  }

  sweep(olderThanMs: number): number {
    let n = 0;
    for (const [id, slot] of this.slotOf) {
      if (this.seen[slot]! < olderThanMs) {
        this.delete(id);
        n++;
      }
    }
    return n;
  }
}

export function createMemoryRegistry(): Registry {
  return new CompactRegistry();
}

