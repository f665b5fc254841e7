/**
 * Rate limits per source: an IPv4 address, or an IPv6 /64 (one subscriber's prefix; an attacker on
 * one line draws from 2^64 addresses). Every per-source limiter of the server takes this key: the
 * UDP registration and probe ports, the TLS requests and wrong passwords (also fleet-wide through
 * Redis), the relay's share per source.
 */
import test from 'ava';
import { createSocket } from 'node:dgram';
import pino from 'pino';
import { createRateLimiter, sourceKey } from '../../agent/server/rate-limiter.js';
import { createRegistrationEndpoint } from '../../agent/server/registration-endpoint.js';
import { createMemoryRegistry } from '../../agent/server/registry.js';
import { systemClock } from '../../agent/common/clock.js';

test('sourceKey: IPv4 as it is, v4-mapped as IPv4, IPv6 by its /64 in every text form', (t) => {
  t.is(sourceKey('203.0.113.9'), '203.0.113.9');
  t.is(sourceKey('::ffff:203.0.113.9'), '203.0.113.9');
  t.is(sourceKey('::ffff:cb00:7109'), '203.0.113.9');
  const k = sourceKey('2a02:1:2:3:4:5:6:7');
  t.is(k, '2a02:1:2:3::/64');
  for (const same of ['2a02:1:2:3::1', '2a02:0001:0002:0003:ffff:ffff:ffff:ffff', '2A02:1:2:3:abcd::', '2a02:1:2:3::1%eth0'])
    t.is(sourceKey(same), k, same);
  for (const other of ['2a02:1:2:4::1', '2a02:1:2::1', '2a03:1:2:3::1']) t.not(sourceKey(other), k, other);
  t.is(sourceKey('::1'), '0:0:0:0::/64');
});

test('a limiter keyed by sourceKey: a whole /64 shares one bucket, another /64 has its own', (t) => {
  let now = 0;
  const limiter = createRateLimiter({ perSecond: 1, burst: 3 }, { now: () => now });
  // An attacker rotating through addresses of one /64 gets the burst once, not per address.
  let allowed = 0;
  for (let i = 1; i <= 100; i++) if (limiter.take(sourceKey(`2a02:1:2:3::${i.toString(16)}`))) allowed++;
  t.true(allowed <= 4, `allowed ${allowed}`);
  t.true(limiter.take(sourceKey('2a02:1:2:4::1')), 'the neighbouring /64 is another subscriber');
  t.true(limiter.take(sourceKey('203.0.113.1')));
  now += 2000;
  t.true(limiter.take(sourceKey('2a02:1:2:3::ffff')), 'refilled');
});

test('the registration port charges its limiter per /64, not per address', async (t) => {
  const keys: string[] = [];
  const endpoint = createRegistrationEndpoint({
    host: '::1',
    port: 0,
    masterKey: Buffer.alloc(32, 7),
    registry: createMemoryRegistry(),
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    sourceLimiter: { limit: { perSecond: 1, burst: 1 }, enabled: true, peek: () => true, take: (k) => (keys.push(k), false) },
  });
  try {
    await endpoint.start();
  } catch (err) {
    t.log(`no IPv6 loopback here: ${(err as Error).message}`);
    return t.pass();
  }
  const s = createSocket('udp6');
  await new Promise<void>((r) => s.bind(0, '::1', r));
  await new Promise<void>((r, j) => s.send(Buffer.alloc(40), endpoint.address().port, '::1', (e) => (e ? j(e) : r())));
  for (let i = 0; i < 50 && keys.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  s.close();
  await endpoint.stop();
  t.deepEqual(keys, ['0:0:0:0::/64']);
  t.is(endpoint.counters.get('rateLimited'), 1);
});
