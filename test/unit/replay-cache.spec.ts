import test from 'ava';
import { fc, testProp } from '@fast-check/ava';
import { REPLAY_CACHE_MAX_ENTRIES, ReplayCache } from '../../agent/common/replay-cache.js';

const n = (i: number): Buffer => Buffer.alloc(16, i);

test('a nonce is fresh once, then replayed until (and including) its expiry, then fresh again', (t) => {
  const cache = new ReplayCache();
  t.is(cache.check(n(1), 1000, 0), 'fresh');
  t.is(cache.check(n(1), 1000, 0), 'replayed');
  t.is(cache.check(n(1), 5000, 999), 'replayed');
  t.is(cache.check(n(1), 5000, 1000), 'replayed', 'still live at exactly its expiry');
  t.is(cache.check(n(1), 5000, 1001), 'fresh', 'past its expiry the nonce may be reused');
  t.is(cache.check(n(1), 9999, 4000), 'replayed', 'and is now remembered with the new expiry');
  t.is(cache.size, 1);
});

test('nonces are compared by content, whatever the view type', (t) => {
  const cache = new ReplayCache();
  const bytes = new Uint8Array(16).fill(7);
  t.is(cache.check(bytes, 100, 0), 'fresh');
  t.is(cache.check(Buffer.from(bytes), 100, 0), 'replayed');
  const big = new Uint8Array(32).fill(7);
  t.is(cache.check(big.subarray(8, 24), 100, 0), 'replayed', 'a subarray with the same bytes');
  t.is(cache.check(n(8), 100, 0), 'fresh');
  t.is(cache.size, 2);
});

test(`default bound is ${REPLAY_CACHE_MAX_ENTRIES} entries`, (t) => {
  t.is(REPLAY_CACHE_MAX_ENTRIES, 10_000);
  const cache = new ReplayCache();
  for (let i = 0; i < REPLAY_CACHE_MAX_ENTRIES; i++) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(i);
    if (cache.check(b, 100, 0) !== 'fresh') return t.fail(`entry ${i}`);
  }
  t.is(cache.check(Buffer.from('extra'), 100, 0), 'full');
  t.is(cache.size, REPLAY_CACHE_MAX_ENTRIES);
});

test('when full of live nonces it fails closed; expired ones are pruned to make room', (t) => {
  const cache = new ReplayCache(3);
  t.is(cache.check(n(1), 100, 0), 'fresh');
  t.is(cache.check(n(2), 200, 0), 'fresh');
  t.is(cache.check(n(3), 300, 0), 'fresh');
  t.is(cache.check(n(4), 400, 50), 'full');
  t.is(cache.size, 3);
  t.is(cache.check(n(4), 400, 50), 'full', 'a refused nonce was not remembered');
  t.is(cache.check(n(2), 400, 50), 'replayed', 'a known live nonce is still reported as replayed when full');
  // At 150 the first has expired: it is pruned and the new one fits.
  t.is(cache.check(n(4), 400, 150), 'fresh');
  t.is(cache.size, 3);
  t.is(cache.check(n(5), 500, 150), 'full');
  t.is(cache.check(n(2), 500, 150), 'replayed');
});

test('prune drops only expired entries', (t) => {
  const cache = new ReplayCache();
  cache.check(n(1), 100, 0);
  cache.check(n(2), 200, 0);
  cache.check(n(3), 300, 0);
  cache.prune(200);
  t.is(cache.size, 2);
  t.is(cache.check(n(2), 999, 200), 'replayed');
  t.is(cache.check(n(3), 999, 200), 'replayed');
  t.is(cache.check(n(1), 999, 200), 'fresh');
});

type Op = { nonce: number; ttl: number; advance: number };

testProp(
  'model: never fresh while an earlier acceptance is live, replayed only then, full only when every slot is live',
  [fc.integer({ min: 1, max: 6 }), fc.array(fc.record({ nonce: fc.nat(9), ttl: fc.nat(50), advance: fc.nat(20) }), { maxLength: 60 })],
  (t, max, ops: Op[]) => {
    const cache = new ReplayCache(max);
    const accepted = new Map<number, number>(); // nonce -> expiry of its latest acceptance
    let now = 0;
    for (const op of ops) {
      now += op.advance;
      const live = [...accepted.values()].filter((exp) => exp >= now).length;
      const prior = accepted.get(op.nonce);
      const result = cache.check(n(op.nonce), now + op.ttl, now);
      if (prior !== undefined && prior >= now) {
        t.is(result, 'replayed', `nonce ${op.nonce} at ${now}`);
      } else if (live >= max) {
        t.is(result, 'full', `nonce ${op.nonce} at ${now}`);
      } else {
        t.is(result, 'fresh', `nonce ${op.nonce} at ${now}`);
        accepted.set(op.nonce, now + op.ttl);
      }
      t.true(cache.size <= max);
    }
    t.true(cache.size <= accepted.size);
  },
);

test('expired nonces are swept as time passes: the cache holds about a freshness window of them, not all it ever saw', (t) => {
  const cache = new ReplayCache();
  // A request every 3 s, each fresh for 60 s, for 10 hours: 12,000 requests, more than the cap.
  for (let now = 0, i = 0; now < 36_000_000; now += 3_000, i++) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(i);
    if (cache.check(b, now + 60_000, now) !== 'fresh') return t.fail(`request ${i} at ${now} ms`);
    if (cache.size > 2 * (60_000 / 3_000) + 1) return t.fail(`${cache.size} entries at ${now} ms`);
  }
  t.pass();
});
