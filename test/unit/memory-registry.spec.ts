/**
 * The compact in-memory registry (arena of ID bytes, open-addressing table, typed arrays) behaves
 * like a Map of entries (model-based property test, with enough keys for the table to grow and
 * deletions to shift probe chains, and non-ASCII IDs), keeps the newest registration (P1's replay
 * rule lives in `record`, which also says whether the mapping moved), and reuses slots after
 * deletion.
 */
import test from 'ava';
import fc from 'fast-check';
import { createMemoryRegistry, type RegistryEntry } from '../../agent/server/registry.js';

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
const ipv6 = fc.constantFrom('2001:db8::1', '::1', 'fe80::1:2', '2a00:1450:4001:81c::200e');
// Not the dotted quad Node writes: must come back exactly as given (kept as strings).
const odd = fc.constantFrom('01.2.3.4', '1.2.3', '256.1.1.1', '1.2.3.4.5', '1..2.3', '1.2.3.', 'a.b.c.d', '');
const entry = fc.record({
  address: fc.oneof(ipv4, ipv6, odd),
  port: fc.nat(65535),
  lastSeenMs: fc.integer({ min: 0, max: 2 ** 47 }),
  lastTimestampMs: fc.integer({ min: 0, max: 2 ** 47 }),
});
const id = fc.oneof(
  fc.constantFrom('A', 'B', 'TV-000123', 'REC-9', 'x'.repeat(64), 'id.with-dots_1', 'é', 'Aé', '日本-1', 'AA'),
  // Many keys: the hash table grows, probe chains collide, deletions shift entries back.
  fc.integer({ min: 0, max: 3000 }).map((n) => `ID-${n}`),
);
const op = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), id, e: entry }),
  fc.record({ kind: fc.constant('record' as const), id, e: entry }),
  fc.record({ kind: fc.constant('delete' as const), id }),
  fc.record({ kind: fc.constant('sweep' as const), before: fc.integer({ min: 0, max: 2 ** 47 }) }),
);

test('behaves like a Map of entries under any sequence of set/record/delete/sweep', (t) => {
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 3000, size: 'max' }), (ops) => {
      const reg = createMemoryRegistry();
      const model = new Map<string, RegistryEntry>();
      for (const o of ops) {
        if (o.kind === 'set') {
          reg.set(o.id, o.e);
          model.set(o.id, o.e);
        } else if (o.kind === 'record') {
          const prev = model.get(o.id);
          const r = reg.record(o.id, o.e);
          if (prev && o.e.lastTimestampMs <= prev.lastTimestampMs) {
            if (r.outcome !== 'replayed') return false;
          } else {
            if (r.outcome !== 'accepted') return false;
            const moved = !prev || prev.address !== o.e.address || prev.port !== o.e.port;
            if (r.moved !== moved) return false;
            if (JSON.stringify(r.previous) !== JSON.stringify(moved ? prev : undefined)) return false;
            model.set(o.id, o.e);
          }
        } else if (o.kind === 'delete') {
          if (reg.delete(o.id) !== model.delete(o.id)) return false;
        } else {
          let n = 0;
          for (const [k, e] of model) if (e.lastSeenMs < o.before) (model.delete(k), n++);
          if (reg.sweep(o.before) !== n) return false;
        }
        if (reg.size !== model.size) return false;
        if ('id' in o && JSON.stringify(reg.get(o.id)) !== JSON.stringify(model.get(o.id))) return false;
      }
      for (const [k, e] of model) if (JSON.stringify(reg.get(k)) !== JSON.stringify(e)) return false;
      const listed = new Map(reg.entries());
      return listed.size === model.size && [...model.keys()].every((k) => listed.has(k));
    }),
    { numRuns: 60 },
  );
  t.pass();
});

test('holds 50,000 devices, grows, and reuses the slots of deleted ones', (t) => {
  const reg = createMemoryRegistry();
  for (let i = 0; i < 50_000; i++)
    reg.set(`DEV-${i}`, {
      address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      port: i % 65536,
      lastSeenMs: i,
      lastTimestampMs: i,
    });
  t.is(reg.size, 50_000);
  t.deepEqual(reg.get('DEV-40000'), { address: '10.0.156.64', port: 40000, lastSeenMs: 40000, lastTimestampMs: 40000 });
  t.is(reg.sweep(25_000), 25_000);
  for (let i = 0; i < 25_000; i++) reg.set(`NEW-${i}`, { address: '192.0.2.1', port: 1, lastSeenMs: 1, lastTimestampMs: 1 });
  t.is(reg.size, 50_000);
  t.is(reg.get('DEV-49999')?.port, 49999 % 65536);
  t.is(reg.get('NEW-24999')?.address, '192.0.2.1');
  t.is(reg.get('DEV-1'), undefined);
});

test('the ID arena is compacted after many deletions, and every entry stays findable', (t) => {
  const reg = createMemoryRegistry();
  const e = (i: number) => ({ address: '198.51.100.7', port: i % 65536, lastSeenMs: i, lastTimestampMs: i });
  for (let i = 0; i < 5000; i++) reg.set(`FIRST-WAVE-DEVICE-${i}`, e(i));
  for (let i = 0; i < 4500; i++) t.true(reg.delete(`FIRST-WAVE-DEVICE-${i}`));
  for (let i = 0; i < 20_000; i++) reg.set(`SECOND-${i}`, e(i));
  t.is(reg.size, 20_500);
  for (let i = 4500; i < 5000; i++) t.is(reg.get(`FIRST-WAVE-DEVICE-${i}`)?.port, i);
  for (let i = 0; i < 20_000; i += 997) t.is(reg.get(`SECOND-${i}`)?.lastSeenMs, i);
  t.is(reg.get('FIRST-WAVE-DEVICE-1'), undefined);
  t.is([...reg.entries()].length, 20_500);
  t.deepEqual(new Set([...reg.entries()].map(([id]) => id)).size, 20_500);
});

test('devices counts a dual-stack device once: its IPv6 mapping ("<id>/6") pairs with its IPv4 one', (t) => {
  const r = createMemoryRegistry();
  const e = (address: string) => ({ address, port: 4000, lastSeenMs: 1, lastTimestampMs: 1 });
  r.set('TV-1', e('202.204.16.13'));
  t.is(r.devices, 1);
  r.set('TV-1/6', e('2a0a::3'));
  t.is(r.size, 2);
  t.is(r.devices, 1, 'two mappings, one device');
  r.set('TV-2/6', e('2a0a::4'));
  t.is(r.devices, 2, 'an IPv6-only device counts');
  r.set('TV-2', e('202.204.16.14'));
  t.is(r.devices, 2, 'paired the other way round');
  r.delete('TV-1');
  t.is(r.devices, 2, 'TV-1 keeps its IPv6 mapping');
  r.delete('TV-1/6');
  r.delete('TV-2/6');
  t.is(r.devices, 1);
  t.is(r.size, 1);
  r.set('TV-3', e('1.2.3.4'));
  t.is(r.devices, 2);
});

test('devices is the number of distinct devices, under any sequence of sets and deletes (property)', (t) => {
  const key = fc.tuple(fc.constantFrom('A', 'B', 'C', 'D'), fc.boolean()).map(([id, v6]) => (v6 ? `${id}/6` : id));
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), key), { maxLength: 60 }), (ops) => {
      const r = createMemoryRegistry();
      const model = new Set<string>();
      for (const [add, k] of ops) {
        if (add) {
          r.set(k, { address: '1.2.3.4', port: 1, lastSeenMs: 1, lastTimestampMs: 1 });
          model.add(k);
        } else {
          r.delete(k);
          model.delete(k);
        }
        const devices = new Set([...model].map((m) => m.replace(/\/6$/, ''))).size;
        if (r.devices !== devices || r.size !== model.size) return false;
      }
      return true;
    }),
  );
  t.pass();
});
