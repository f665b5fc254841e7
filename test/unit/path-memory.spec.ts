import test from 'ava';
import { createPathMemory, PATH_MEMORY_TTL_MS } from '../../agent/paths/path-memory.js';

const relayed = { relayed: true, rushed: false };

test('a relay win after the head start is remembered per device and local address, for the TTL', (t) => {
  const m = createPathMemory();
  m.record('TV', '192.168.1.11', relayed, 1000);
  t.true(m.directFailed('TV', '192.168.1.11', 1000 + PATH_MEMORY_TTL_MS - 1));
  t.false(m.directFailed('TV', '10.0.0.5', 1000), 'another network: the whole race again');
  t.false(m.directFailed('RADIO', '192.168.1.11', 1000), 'another device');
  t.false(m.directFailed('TV', '192.168.1.11', 1000 + PATH_MEMORY_TTL_MS), 'expired');
  t.is(m.size, 0, 'the expired entry is gone');
});

test('a rushed relay win does not renew the memory; a direct win forgets it', (t) => {
  const m = createPathMemory({ ttlMs: 100 });
  m.record('TV', 'a', relayed, 0);
  m.record('TV', 'a', { relayed: true, rushed: true }, 90);
  t.false(m.directFailed('TV', 'a', 100), 'still expires 100 ms after the direct paths were seen failing');
  m.record('TV', 'a', relayed, 200);
  m.record('TV', 'a', { relayed: false, rushed: true }, 210);
  t.false(m.directFailed('TV', 'a', 210));
});

test('bounded: the oldest entry goes first', (t) => {
  const m = createPathMemory({ maxEntries: 3 });
  for (let i = 0; i < 5; i++) m.record(`D${i}`, 'a', relayed, i);
  t.is(m.size, 3);
  t.false(m.directFailed('D0', 'a', 10));
  t.false(m.directFailed('D1', 'a', 10));
  t.true(m.directFailed('D4', 'a', 10));
});
