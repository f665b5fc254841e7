/**
 * The in-memory equipment list (registry.ts) for millions of entries: an entry is neither an object
 * nor a string. The IDs' bytes sit in one arena buffer, an open-addressing hash table maps them to
 * slot numbers, and a slot's fields share one 40-byte record in one typed array (IPv4 as a u32,
 * port u16, three f64 times). See `npm run bench -- server` for the bytes per device, against
 * ~274 for a Map of objects.
 */
import { ipv4ToU32 } from '../protocol/address.js';
import type { LocalRecordResult, Registry, RegistryEntry, TouchResult } from './registry.js';

/** family-key.ts IPV6_KEY_SUFFIX (not imported: family-key.ts imports registry.ts's types). */
const IPV6_SUFFIX = '/6';

const ACCEPTED_IN_PLACE: LocalRecordResult = Object.freeze({ outcome: 'accepted', moved: false, previous: undefined });
const REPLAYED: LocalRecordResult = Object.freeze({ outcome: 'replayed' });
const UNVERIFIED: LocalRecordResult = Object.freeze({ outcome: 'unverified' });

const INITIAL_SLOTS = 1024;
/** One slot's record (see `CompactRegistry`): its size, and each field's index in its own view. */
const SLOT_BYTES = 40;
const F64_PER_SLOT = SLOT_BYTES / 8;
const F64_SEEN = 0;
const F64_STAMP = 1;
/** When the entry was last written to the shared list (0: never; only with Redis). */
const F64_SHARED = 4;
const U32_PER_SLOT = SLOT_BYTES / 4;
const U32_ADDRESS = 4;
const U32_ID_HASH = 5;
const U32_ID_OFFSET = 6;
const U16_PER_SLOT = SLOT_BYTES / 2;
const U16_PORT = 14;
/** 0 = the slot is free. */
const U8_ID_LENGTH = 30;
/** The identity generation (0-255, identity-name.ts): the slot's last free byte. */
const U8_GENERATION = 31;
const INITIAL_ARENA_BYTES = 16 * 1024;
/** Equipment IDs are at most 64 bytes on the wire; the length is kept in a u8. */
const MAX_ID_BYTES = 255;

function u32ToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** FNV-1a over the UTF-16 code units (IDs are ASCII in practice). */
function hashId(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * No JavaScript object or string per device: the IDs' bytes live in one arena buffer, an
 * open-addressing hash table (linear probing, backward-shift deletion) maps them to slots, and a
 * slot's fields live in typed arrays. Only off-heap typed arrays grow with the fleet.
 */
export class CompactRegistry implements Registry {
  readonly kind = 'memory' as const;
  private count = 0;
  /** IPv6 mappings ("<id>/6") whose device also has an IPv4 entry: `devices` is `count` less these. */
  private pairs = 0;
  /** IPv6 mappings held ("<id>/6" keys). */
  private sixes = 0;
  /** Hash table: slot + 1, 0 = empty; a power of two, at most half full. */
  private table = new Int32Array(INITIAL_SLOTS * 2);
  private arena = Buffer.alloc(INITIAL_ARENA_BYTES);
  private arenaUsed = 0;
  private arenaGarbage = 0;
  /** Addresses that are not IPv4 (rare: IPv6 devices), by slot. */
  private readonly otherAddress = new Map<number, string>();
  /** Node IDs by slot, only when an entry names another node (tests, tools). */
  private readonly nodeOf = new Map<number, string>();
  private free: number[] = [];
  private next = 0;
  /**
   * One record of SLOT_BYTES per slot (array of structures), so a lookup and update touch one
   * cache line, not one per field: at a million devices that halves the cost of a registration's
   * record. Layout, in bytes: seen f64 @0, newest timestamp f64 @8, IPv4 u32 @16, ID hash u32 @20,
   * ID offset in the arena u32 @24, port u16 @28, ID length u8 @30 (0 = slot free), last write to
   * the shared list f64 @32 (write on change; 0 without Redis).
   */
  private capacity = INITIAL_SLOTS;
  private f64 = new Float64Array(INITIAL_SLOTS * F64_PER_SLOT);
  private u32 = new Uint32Array(this.f64.buffer);
  private u16 = new Uint16Array(this.f64.buffer);
  private u8 = new Uint8Array(this.f64.buffer);

  get size(): number {
    return this.count;
  }

  get devices(): number {
    return this.count - this.pairs;
  }

  /** The other family's key of `id` (family-key.ts: "<id>/6" is the IPv6 mapping's). */
  private static partnerOf(id: string): string {
    return id.endsWith(IPV6_SUFFIX) ? id.slice(0, -IPV6_SUFFIX.length) : id + IPV6_SUFFIX;
  }

  /** After `id` was added (+1) or removed (-1): a pair of mappings of one device made or broken. */
  private pairChanged(id: string, by: 1 | -1): void {
    const partner = CompactRegistry.partnerOf(id);
    if (this.find(partner, hashId(partner)) >= 0) this.pairs += by;
  }

  private growSlots(): void {
    this.capacity = Math.ceil(this.capacity * 1.5);
    const f64 = new Float64Array(this.capacity * F64_PER_SLOT);
    f64.set(this.f64);
    this.f64 = f64;
    this.u32 = new Uint32Array(f64.buffer);
    this.u16 = new Uint16Array(f64.buffer);
    this.u8 = new Uint8Array(f64.buffer);
  }

  private growTable(): void {
    const t = new Int32Array(this.table.length * 2);
    const mask = t.length - 1;
    for (let s = 0; s < this.next; s++) {
      if (this.u8[s * SLOT_BYTES + U8_ID_LENGTH] === 0) continue;
      let i = this.u32[s * U32_PER_SLOT + U32_ID_HASH]! & mask;
      while (t[i] !== 0) i = (i + 1) & mask;
      t[i] = s + 1;
    }
    this.table = t;
  }

  /** Copy the live IDs into a fresh arena (after many deletions). */
  private compactArena(minBytes: number): void {
    const a = Buffer.alloc(Math.max(INITIAL_ARENA_BYTES, (this.arenaUsed - this.arenaGarbage + minBytes) * 2));
    let used = 0;
    for (let s = 0; s < this.next; s++) {
      const len = this.u8[s * SLOT_BYTES + U8_ID_LENGTH]!;
      if (len === 0) continue;
      this.arena.copy(a, used, this.u32[s * U32_PER_SLOT + U32_ID_OFFSET]!, this.u32[s * U32_PER_SLOT + U32_ID_OFFSET]! + len);
      this.u32[s * U32_PER_SLOT + U32_ID_OFFSET] = used;
      used += len;
    }
    this.arena = a;
    this.arenaUsed = used;
    this.arenaGarbage = 0;
  }

  private sameId(s: number, id: string): boolean {
    const off = this.u32[s * U32_PER_SLOT + U32_ID_OFFSET]!;
    const len = this.u8[s * SLOT_BYTES + U8_ID_LENGTH]!;
    if (len === id.length) {
      // ASCII fast path; a stored non-ASCII byte (>= 0x80) never equals an ASCII code unit.
      for (let k = 0; k < len; k++) if (this.arena[off + k] !== id.charCodeAt(k)) return false;
      return true;
    }
    return len > id.length && this.arena.toString('utf8', off, off + len) === id;
  }

  /** The slot of `id`, or -1. */
  private find(id: string, h: number): number {
    const mask = this.table.length - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const v = this.table[i]!;
      if (v === 0) return -1;
      const s = v - 1;
      if (this.u32[s * U32_PER_SLOT + U32_ID_HASH] === h && this.sameId(s, id)) return s;
    }
  }

  private insert(id: string, h: number): number {
    const bytes = Buffer.byteLength(id, 'utf8');
    if (bytes === 0 || bytes > MAX_ID_BYTES) throw new RangeError(`equipment ID must be 1-${MAX_ID_BYTES} bytes`);
    if ((this.count + 1) * 2 > this.table.length) this.growTable();
    let s = this.free.pop();
    if (s === undefined) {
      if (this.next === this.capacity) this.growSlots();
      s = this.next++;
    }
    if (this.arenaUsed + bytes > this.arena.length) {
      if (this.arenaGarbage * 2 > this.arenaUsed) this.compactArena(bytes);
      else {
        const a = Buffer.alloc(Math.max(this.arena.length * 2, this.arenaUsed + bytes));
        this.arena.copy(a, 0, 0, this.arenaUsed);
        this.arena = a;
      }
    }
    this.arena.write(id, this.arenaUsed, bytes, 'utf8');
    this.u32[s * U32_PER_SLOT + U32_ID_OFFSET] = this.arenaUsed;
    this.u8[s * SLOT_BYTES + U8_ID_LENGTH] = bytes;
    this.arenaUsed += bytes;
    this.u32[s * U32_PER_SLOT + U32_ID_HASH] = h;
    const mask = this.table.length - 1;
    let i = h & mask;
    while (this.table[i] !== 0) i = (i + 1) & mask;
    this.table[i] = s + 1;
    this.count++;
    // Only IDs that could have a partner pay for the lookup: every "/6" key, and a plain ID while any exists.
    if (this.sixes > 0 || id.endsWith(IPV6_SUFFIX)) {
      if (id.endsWith(IPV6_SUFFIX)) this.sixes++;
      this.pairChanged(id, 1);
    }
    return s;
  }

  private read(slot: number): RegistryEntry {
    const other = this.otherAddress.get(slot);
    const node = this.nodeOf.get(slot);
    const e = {
      address: other ?? u32ToIpv4(this.u32[slot * U32_PER_SLOT + U32_ADDRESS]!),
      port: this.u16[slot * U16_PER_SLOT + U16_PORT]!,
      lastSeenMs: this.f64[slot * F64_PER_SLOT + F64_SEEN]!,
      lastTimestampMs: this.f64[slot * F64_PER_SLOT + F64_STAMP]!,
    };
    const shared = this.f64[slot * F64_PER_SLOT + F64_SHARED]!;
    const generation = this.u8[slot * SLOT_BYTES + U8_GENERATION]!;
    const withShared = shared === 0 ? e : { ...e, sharedAtMs: shared };
    const withGeneration = generation === 0 ? withShared : { ...withShared, generation };
    return node === undefined ? withGeneration : { ...withGeneration, node };
  }

  private write(slot: number, e: RegistryEntry, v4: number = ipv4ToU32(e.address)): void {
    if (v4 >= 0) {
      this.u32[slot * U32_PER_SLOT + U32_ADDRESS] = v4;
      // The maps are empty on a single node with IPv4 devices: skip a delete per registration.
      if (this.otherAddress.size !== 0) this.otherAddress.delete(slot);
    } else this.otherAddress.set(slot, e.address);
    this.u16[slot * U16_PER_SLOT + U16_PORT] = e.port;
    this.f64[slot * F64_PER_SLOT + F64_SEEN] = e.lastSeenMs;
    this.f64[slot * F64_PER_SLOT + F64_STAMP] = e.lastTimestampMs;
    this.f64[slot * F64_PER_SLOT + F64_SHARED] = e.sharedAtMs ?? 0;
    this.u8[slot * SLOT_BYTES + U8_GENERATION] = e.generation ?? 0;
    if (e.node !== undefined) this.nodeOf.set(slot, e.node);
    else if (this.nodeOf.size !== 0) this.nodeOf.delete(slot);
  }

  get(id: string): RegistryEntry | undefined {
    const slot = this.find(id, hashId(id));
    return slot < 0 ? undefined : this.read(slot);
  }

  lookup(id: string): RegistryEntry | undefined {
    return this.get(id);
  }

  set(id: string, e: RegistryEntry): void {
    const h = hashId(id);
    let slot = this.find(id, h);
    if (slot < 0) slot = this.insert(id, h);
    this.write(slot, e);
  }

  record(id: string, e: RegistryEntry, mayMove = true): LocalRecordResult {
    const h = hashId(id);
    let slot = this.find(id, h);
    if (slot >= 0 && e.lastTimestampMs <= this.f64[slot * F64_PER_SLOT + F64_STAMP]!) return REPLAYED;
    const v4 = ipv4ToU32(e.address);
    let result = ACCEPTED_IN_PLACE;
    if (!mayMove && (slot < 0 || !this.sameMapping(slot, e, v4))) return UNVERIFIED;
    if (slot < 0) {
      slot = this.insert(id, h);
      result = { outcome: 'accepted', moved: true, previous: undefined };
    } else if (!this.sameMapping(slot, e, v4)) {
      result = { outcome: 'accepted', moved: true, previous: this.read(slot) };
    }
    this.write(slot, e, v4);
    return result;
  }

  touchShared(id: string, e: RegistryEntry, freshAfterMs: number, validSinceMs: number): TouchResult {
    const slot = this.find(id, hashId(id));
    if (slot < 0) return 'other';
    const f = slot * F64_PER_SLOT;
    if (e.lastTimestampMs <= this.f64[f + F64_STAMP]!) return 'replayed';
    const shared = this.f64[f + F64_SHARED]!;
    if (shared === 0 || shared <= freshAfterMs || shared < validSinceMs) return 'other';
    if (this.nodeOf.size !== 0 && this.nodeOf.has(slot)) return 'other';
    if (this.u8[slot * SLOT_BYTES + U8_GENERATION] !== (e.generation ?? 0)) return 'other';
    if (!this.sameMapping(slot, e, ipv4ToU32(e.address))) return 'other';
    this.f64[f + F64_SEEN] = e.lastSeenMs;
    this.f64[f + F64_STAMP] = e.lastTimestampMs;
    return 'touched';
  }

  /** Whether the slot already holds e's address and port (no string built for IPv4). */
  private sameMapping(slot: number, e: RegistryEntry, v4: number): boolean {
    if (this.u16[slot * U16_PER_SLOT + U16_PORT] !== e.port) return false;
    const other = this.otherAddress.size === 0 ? undefined : this.otherAddress.get(slot);
    if (other !== undefined) return other === e.address;
    return v4 >= 0 && this.u32[slot * U32_PER_SLOT + U32_ADDRESS] === v4;
  }

  delete(id: string): boolean {
    const h = hashId(id);
    const mask = this.table.length - 1;
    let i = h & mask;
    for (; ; i = (i + 1) & mask) {
      const v = this.table[i]!;
      if (v === 0) return false;
      if (this.u32[(v - 1) * U32_PER_SLOT + U32_ID_HASH] === h && this.sameId(v - 1, id)) break;
    }
    const slot = this.table[i]! - 1;
    // Backward-shift deletion keeps every probe chain unbroken without tombstones.
    this.table[i] = 0;
    for (let j = (i + 1) & mask; this.table[j] !== 0; j = (j + 1) & mask) {
      const home = this.u32[(this.table[j]! - 1) * U32_PER_SLOT + U32_ID_HASH]! & mask;
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!between) {
        this.table[i] = this.table[j]!;
        this.table[j] = 0;
        i = j;
      }
    }
    this.arenaGarbage += this.u8[slot * SLOT_BYTES + U8_ID_LENGTH]!;
    this.u8[slot * SLOT_BYTES + U8_ID_LENGTH] = 0;
    this.otherAddress.delete(slot);
    this.nodeOf.delete(slot);
    this.free.push(slot);
    this.count--;
    if (this.sixes > 0) {
      if (id.endsWith(IPV6_SUFFIX)) this.sixes--;
      this.pairChanged(id, -1);
    }
    return true;
  }

  private idAt(slot: number): string {
    return this.arena.toString(
      'utf8',
      this.u32[slot * U32_PER_SLOT + U32_ID_OFFSET]!,
      this.u32[slot * U32_PER_SLOT + U32_ID_OFFSET]! + this.u8[slot * SLOT_BYTES + U8_ID_LENGTH]!,
    );
  }

  *entries(): IterableIterator<[string, RegistryEntry]> {
    for (let s = 0; s < this.next; s++) if (this.u8[s * SLOT_BYTES + U8_ID_LENGTH] !== 0) yield [this.idAt(s), this.read(s)];
  }

  staleShared(olderThanMs: number, max: number): [string, RegistryEntry][] {
    const out: [string, RegistryEntry][] = [];
    for (let s = 0; s < this.next && out.length < max; s++) {
      if (
        this.u8[s * SLOT_BYTES + U8_ID_LENGTH] !== 0 &&
        this.f64[s * F64_PER_SLOT + F64_SHARED] !== 0 &&
        this.f64[s * F64_PER_SLOT + F64_SEEN]! < olderThanMs &&
        !this.nodeOf.has(s)
      ) {
        out.push([this.idAt(s), this.read(s)]);
      }
    }
    return out;
  }

  sweep(olderThanMs: number): number {
    let n = 0;
    for (let s = 0; s < this.next; s++) {
      if (this.u8[s * SLOT_BYTES + U8_ID_LENGTH] !== 0 && this.f64[s * F64_PER_SLOT + F64_SEEN]! < olderThanMs) {
        this.delete(this.idAt(s));
        n++;
      }
    }
    return n;
  }
}
