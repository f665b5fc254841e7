/**
 * Dual stack with the shared registry (issue 14): a device's IPv6 mapping lives in its own Redis
 * key, "{d:<id>/6}", beside the unchanged "{d:<id>}" of its IPv4 mapping; an entry in the old
 * format (written by a node that knows nothing of IPv6) still reads the same; a request is
 * admitted with either family's mapping, and both are notified.
 */
import test from 'ava';
import pino from 'pino';
import { systemClock } from '../../agent/common/clock.js';
import { createDualRegistrar } from '../../agent/device/dual-registrar.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { lookupMappings } from '../../agent/server/family-key.js';
import type { RedisRegistry } from '../../agent/server/redis-registry.js';
import { startRedis, type RedisProcess } from '../../scripts/lib/redis-process.js';
import { createServerPki, Scope, startServer, waitUntil } from '../helpers/harness.js';
import { redisAvailable, redisTest } from '../helpers/redis-test.js';

let redis: RedisProcess;
test.before(async () => {
  if (redisAvailable) redis = await startRedis();
});
test.after.always(async () => {
  await redis?.stop();
});

const ID = 'DUAL-REDIS-0001';

redisTest('each family in its own key; the IPv4 key keeps its old format; old entries still read', async (t) => {
  const scope = new Scope();
  t.teardown(() => scope.run());
  const pki = createServerPki();
  const server = await startServer(scope, pki, {
    udpHost: '::',
    tlsHost: '::',
    redis: { url: redis.url, keyPrefix: 'ds:', refreshAfterMs: 1000 },
  });
  const registrar = createDualRegistrar({
    equipmentId: ID,
    registrationKey: deriveRegistrationKey(pki.masterKey, ID),
    serverHost: 'rv.test',
    serverPort: server.udpAddress().port,
    intervalMs: 15_000,
    localPort: 0,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    lookup: async (_host, family) => (family === 6 ? '::1' : '127.0.0.1'),
    onNotify: () => undefined,
  });
  await registrar.start();
  t.teardown(() => registrar.stop());
  await waitUntil(
    () => registrar.families().ipv4?.state === 'registered' && registrar.families().ipv6?.state === 'registered',
    'both registered',
  );
  const client = (server.backend as RedisRegistry).client;
  const v4 = (await client.hgetall(`ds:{d:${ID}}`)) as Record<string, string>;
  const v6 = (await client.hgetall(`ds:{d:${ID}/6}`)) as Record<string, string>;
  t.is(v4.a, '127.0.0.1');
  t.is(v6.a, '::1');
  // a, p, s, t, n as before the IPv6 work; g (the identity generation, issue 19) is read as 0 when absent.
  t.deepEqual(Object.keys(v4).sort(), ['a', 'g', 'n', 'p', 's', 't'], 'the IPv4 key has the fields it always had, plus the generation');
  t.deepEqual(Object.keys(v6).sort(), ['a', 'g', 'n', 'p', 's', 't']);
  const both = await lookupMappings((k) => server.backend.lookup(k), ID);
  t.is(both.v4?.address, '127.0.0.1');
  t.is(both.v6?.address, '::1');

  // An entry written by an older node (the same fields, no IPv6 key): one mapping, read as before.
  const now = Date.now();
  await client.hset('ds:{d:OLD-NODE-0001}', { a: '202.204.16.13', p: '4000', s: String(now), t: String(now), n: 'old-node' });
  const old = await lookupMappings((k) => server.backend.lookup(k), 'OLD-NODE-0001');
  t.like(old.v4, { address: '202.204.16.13', port: 4000, node: 'old-node' });
  t.is(old.v6, undefined);
});
