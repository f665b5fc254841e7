/**
 * Rate limits (per source address and per target device for connection requests, per source for
 * registrations) are enforced, answered with a distinct status, and visible in the Prometheus
 * metrics together with the configured values; registrations are counted by outcome.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { connect } from '../../agent/client/client.js';
import { isPeerlinkError, ErrorCodes } from '../../agent/common/errors.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { encodeRegister, REGISTER_NONCE_BYTES } from '../../agent/protocol/udp-packets.js';
import type { RendezvousServer, ServerLimits } from '../../agent/server/server.js';
import { httpGet, sample } from '../helpers/multi-node.js';
import { createServerPki, recordingUdp, startServer, waitUntil } from '../helpers/harness.js';
import { registerThroughCookie, udpFence } from '../helpers/udp-register.js';

const pki = createServerPki();
const OFF = { perSecond: 0, burst: 1 };
const SLOW = (burst: number) => ({ perSecond: 0.001, burst });

async function server(t: ExecutionContext, limits: Partial<ServerLimits>): Promise<RendezvousServer> {
  return startServer(t, pki, { limits, metrics: { host: '127.0.0.1', port: 0 } });
}

async function ask(s: RendezvousServer, equipmentId: string): Promise<string> {
  try {
    await connect(
      {
        server: { host: '127.0.0.1', port: s.tlsAddress().port },
        serverName: 'localhost',
        caPem: pki.caPem,
        equipmentId,
        accessKey: randomBytes(32),
        service: 'echo',
        accept: { host: '127.0.0.1', port: 0 },
      },
      AbortSignal.timeout(10_000),
    );
    return 'ok';
  } catch (err) {
    return isPeerlinkError(err) ? err.code : String(err);
  }
}

const metrics = async (s: RendezvousServer): Promise<string> => (await httpGet(s.metricsAddress()!.port, '/metrics')).body;

test('requests per device: counted only when the device attaches (P9), so requests for an unknown device never use it up; the limits are in the metrics', async (t) => {
  const s = await server(t, { requestsPerDevice: SLOW(2), requestsPerSource: OFF });
  t.deepEqual(
    [await ask(s, 'TV-A'), await ask(s, 'TV-A'), await ask(s, 'TV-A'), await ask(s, 'TV-B')],
    [ErrorCodes.UNKNOWN_DEVICE, ErrorCodes.UNKNOWN_DEVICE, ErrorCodes.UNKNOWN_DEVICE, ErrorCodes.UNKNOWN_DEVICE],
  );
  const m = await metrics(s);
  t.is(sample(m, /^peerlink_connection_requests_total\{outcome="rate_limited_device"/), 0);
  t.is(sample(m, /^peerlink_rate_limit_burst\{limit="requestsPerDevice"/), 2);
  t.is(sample(m, /^peerlink_rate_limit_per_second\{limit="requestsPerDevice"/), 0.001);
  t.is(sample(m, /^peerlink_rate_limit_per_second\{limit="requestsPerSource"/), 0, 'a disabled limit shows as 0');
  t.is(sample(m, /^peerlink_rate_limit_burst\{limit="authFailuresPerSource"/), 10);
});

test('requests per source address: past the burst the source is refused whatever device it asks for', async (t) => {
  const s = await server(t, { requestsPerSource: SLOW(2), requestsPerDevice: OFF });
  t.deepEqual(
    [await ask(s, 'TV-1'), await ask(s, 'TV-2'), await ask(s, 'TV-3')],
    [ErrorCodes.UNKNOWN_DEVICE, ErrorCodes.UNKNOWN_DEVICE, ErrorCodes.RATE_LIMITED],
  );
  t.is(sample(await metrics(s), /^peerlink_connection_requests_total\{outcome="rate_limited_source"/), 1);
});

test('registrations per source address, and registrations by outcome in the metrics', async (t) => {
  const s = await server(t, { registrationsPerSource: SLOW(6) });
  const udp = await recordingUdp(t);
  const to = { port: s.udpAddress().port };
  const reg = (id: string, key = deriveRegistrationKey(pki.masterKey, id)) =>
    encodeRegister({ equipmentId: id, timestampMs: Date.now(), nonce: randomBytes(REGISTER_NONCE_BYTES) }, key);
  await registerThroughCookie(udp, to, 'DEV-1', deriveRegistrationKey(pki.masterKey, 'DEV-1')); // a cookie request, then accepted
  await udp.send(reg('DEV-2', randomBytes(32)), to); // bad credential
  await udp.send(Buffer.from('not a registration at all'), to); // malformed
  await udp.send(reg('DEV-3'), to); // a new mapping: a cookie request
  await udp.send(reg('DEV-4'), to); // likewise: the burst of 6 is used up
  for (let i = 5; i <= 7; i++) await udp.send(reg(`DEV-${i}`), to); // over the burst
  await waitUntil(() => s.registration.counters.get('rateLimited') === 3, 'three registrations over the limit');
  t.is(s.registration.counters.get('accepted'), 1);
  await waitUntil(() => udp.received.length >= 4, 'an ack and three cookie requests');
  const m = await metrics(s);
  // A fence from another source (this one is over its limit): any answer to the datagrams above is in by now.
  await udpFence(udp, to, pki.masterKey, 'registration', await recordingUdp(t, '127.0.0.2'));
  t.is(udp.received.length, 4, 'only genuine registrations are answered');
  t.is(sample(m, /^peerlink_registrations_total\{outcome="accepted"/), 1);
  t.is(sample(m, /^peerlink_registrations_total\{outcome="cookie_challenged"/), 3);
  t.is(sample(m, /^peerlink_registrations_total\{outcome="bad_credential"/), 1);
  t.is(sample(m, /^peerlink_registrations_total\{outcome="malformed"/), 1);
  t.is(sample(m, /^peerlink_registrations_total\{outcome="rate_limited"/), 3);
  t.is(sample(m, /^peerlink_registered_devices/), 1);
  t.regex(m, /peerlink_process_resident_memory_bytes/, 'process metrics too');
  t.is((await httpGet(s.metricsAddress()!.port, '/healthz')).status, 200);
  t.is((await httpGet(s.metricsAddress()!.port, '/nope')).status, 404);
});
