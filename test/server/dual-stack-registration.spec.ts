/**
 * Dual stack (issue 14): a server listening on "::" takes registrations over IPv4 and IPv6; a
 * device with both registers over each, and the server keeps each mapping (the IPv6 one under
 * "<id>/6", family-key.ts), notifies both, and the device acts on one notification.
 */
import test from 'ava';
import pino from 'pino';
import { systemClock } from '../../agent/common/clock.js';
import { createDualRegistrar, familiesFor } from '../../agent/device/dual-registrar.js';
import { deriveRegistrationKey, MAC_BYTES, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { createServerPki, startServer, waitUntil } from '../helpers/harness.js';

const ID = 'DUAL-STACK-0001';

test('familiesFor: a literal is registered with over its own family, a name over both', (t) => {
  t.deepEqual(familiesFor('192.0.2.1'), [4]);
  t.deepEqual(familiesFor('2001:db8::1'), [6]);
  t.deepEqual(familiesFor('rv.example.net'), [4, 6]);
});

test('a dual-stack device registers over both families; each mapping is kept and notified; one notification is acted on', async (t) => {
  const pki = createServerPki();
  const server = await startServer(t, pki, { udpHost: '::', tlsHost: '::' });
  const { port } = server.udpAddress();
  const notified: string[] = [];
  const registrar = createDualRegistrar({
    equipmentId: ID,
    registrationKey: deriveRegistrationKey(pki.masterKey, ID),
    serverHost: 'rv.test',
    serverPort: port,
    intervalMs: 15_000,
    localPort: 0,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    // The name has an A and an AAAA record.
    lookup: async (_host, family) => (family === 6 ? '::1' : '127.0.0.1'),
    onNotify: (requestId) => notified.push(requestId.toString('hex')),
  });
  await registrar.start();
  t.teardown(() => registrar.stop());
  await waitUntil(
    () => registrar.families().ipv4?.state === 'registered' && registrar.families().ipv6?.state === 'registered',
    'both families registered',
  );
  const v4 = server.registry.get(ID);
  const v6 = server.registry.get(`${ID}/6`);
  t.is(v4?.address, '127.0.0.1', 'the IPv4 mapping, under the equipment ID as before');
  t.is(v6?.address, '::1', 'the IPv6 mapping beside it');
  t.is(registrar.families().ipv4?.publicEndpoint?.address, '127.0.0.1');
  t.is(registrar.families().ipv6?.publicEndpoint?.address, '::1');
  t.is(registrar.status().state, 'registered');

  // Each registers again on its own beat and neither takes the other's place (own timestamps, own cookie).
  const before = server.registration.counters.get('addressChanged');
  registrar.registerNow();
  await waitUntil(() => server.registration.counters.get('accepted') >= 4, 'registered again');
  t.is(server.registration.counters.get('addressChanged'), before, 'no mapping moved');
  t.is(server.registration.counters.get('replayed'), 0);

  // A notification without a target goes to every mapping the node holds; the device acts once.
  const requestId = Buffer.alloc(16, 0xab);
  const wake = { timestampMs: Date.now(), nonce: Buffer.alloc(NONCE_BYTES, 1), tag: Buffer.alloc(MAC_BYTES, 2) };
  t.true(server.registration.notify(ID, requestId, wake));
  t.is(server.registration.counters.get('notificationsSent'), 2);
  await waitUntil(() => notified.length > 0, 'notified');
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(notified, [requestId.toString('hex')], 'the second copy is dropped');
});

test('an IPv4-only name (no AAAA) registers over IPv4 and the IPv6 side stays quiet', async (t) => {
  const pki = createServerPki();
  const server = await startServer(t, pki, { udpHost: '::', tlsHost: '::' });
  const registrar = createDualRegistrar({
    equipmentId: ID,
    registrationKey: deriveRegistrationKey(pki.masterKey, ID),
    serverHost: 'rv.test',
    serverPort: server.udpAddress().port,
    intervalMs: 15_000,
    localPort: 0,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    lookup: async (host, family) => {
      if (family === 6) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return '127.0.0.1';
    },
    onNotify: () => undefined,
  });
  await registrar.start();
  t.teardown(() => registrar.stop());
  await waitUntil(() => registrar.status().state === 'registered', 'registered');
  t.is(server.registry.get(ID)?.address, '127.0.0.1');
  t.is(server.registry.get(`${ID}/6`), undefined);
  t.not(registrar.families().ipv6?.state, 'registered');
});
