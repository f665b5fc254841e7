/**
 * P6 for probes: a probe changes nothing at the server; a bad tag, a replayed nonce and a stale
 * probe from a source without a cookie get no answer; a fresh probe from a new source gets only a
 * cookie request; the mapping check goes only to the mapping the ID registered, never to the
 * probe's source, and only for a probe as large as the ack and the check together; the probe port
 * never sends checks. A client's keyless probe (issue 15) is answered only with the probe port on,
 * to its source only, in fewer bytes, and draws nothing else.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import {
  PROBE_FLAG_CHECK_MAPPING,
  UDP_TYPE_CLIENT_PROBE_ACK,
  UDP_TYPE_COOKIE,
  UDP_TYPE_MAPPING_CHECK,
  UDP_TYPE_REGISTER_ACK,
} from '../../agent/protocol/constants.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { encodeClientProbe, encodeProbe, parseUdpPacket, verifyTag } from '../../agent/protocol/udp-packets.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { createServerPki, recordingUdp, startServer, waitUntil } from '../helpers/harness.js';
import { registerThroughCookie, udpFence } from '../helpers/udp-register.js';

const pki = createServerPki();
const ID = 'P6-PROBE';
const key = deriveRegistrationKey(pki.masterKey, ID);
const probe = (flags: number, o: { k?: Buffer; cookie?: Uint8Array; timestampMs?: number } = {}) =>
  encodeProbe(
    { flags, equipmentId: ID, timestampMs: o.timestampMs ?? Date.now(), nonce: randomBytes(8), ...(o.cookie ? { cookie: o.cookie } : {}) },
    o.k ?? key,
  );
const typeOf = (msg: Buffer): number => parseUdpPacket(msg).packet.type;

test('probes: no registry change, bad tags and replays unanswered, a cookie first, checks only to the registered mapping, never more bytes than received', async (t) => {
  const probePort = await freePort();
  const server = await startServer(t, pki, { probePort });
  const udp = server.udpAddress().port;
  const device = await recordingUdp(t);
  const prober = await recordingUdp(t);

  // A probe from a new source: only a cookie request (smaller than the probe); nothing registered.
  const first = probe(PROBE_FLAG_CHECK_MAPPING);
  await prober.send(first, { port: udp });
  await waitUntil(() => prober.received.length === 1, 'cookie request');
  t.is(server.registry.get(ID), undefined);
  const c = parseUdpPacket(prober.received[0]!.msg).packet;
  t.is(c.type, UDP_TYPE_COOKIE);
  t.true(prober.received[0]!.msg.length <= first.length);
  const cookie = c.type === UDP_TYPE_COOKIE ? Buffer.from(c.cookie) : Buffer.alloc(16);

  // Forged probes (wrong key), a replay of the first probe, a stale probe without a cookie: silence.
  await prober.send(probe(0, { k: randomBytes(32) }), { port: udp });
  await prober.send(probe(PROBE_FLAG_CHECK_MAPPING, { k: randomBytes(32) }), { port: probePort });
  await prober.send(first, { port: udp });
  await prober.send(probe(0, { timestampMs: Date.now() - 10 * 60_000 }), { port: udp });
  await udpFence(prober, { port: udp }, pki.masterKey);
  await udpFence(prober, { port: probePort }, pki.masterKey, 'probe');
  t.is(prober.received.length, 1);

  // With the cookie: an ack. Before any registration, no check is sent.
  await prober.send(probe(PROBE_FLAG_CHECK_MAPPING, { cookie }), { port: udp });
  await waitUntil(() => prober.received.length === 2, 'probe acked');
  t.is(typeOf(prober.received[1]!.msg), UDP_TYPE_REGISTER_ACK);

  // The device registers; a probe from elsewhere asking for a check: the check goes to the device only.
  await registerThroughCookie(device, { port: udp }, ID, key);
  const fromDevice = device.received.length;
  const p = probe(PROBE_FLAG_CHECK_MAPPING, { cookie });
  await prober.send(p, { port: udp });
  await waitUntil(() => device.received.length === fromDevice + 1 && prober.received.length === 3, 'ack and check');
  const check = parseUdpPacket(device.received[fromDevice]!.msg);
  t.is(check.packet.type, UDP_TYPE_MAPPING_CHECK);
  t.true(verifyTag(check, key));
  t.is(typeOf(prober.received[2]!.msg), UDP_TYPE_REGISTER_ACK, 'the prober gets only the ack');
  t.true(prober.received[2]!.msg.length + device.received[fromDevice]!.msg.length <= p.length, 'ack + check <= probe (P6)');
  t.like(server.registry.get(ID), { port: device.port }, 'the probe did not move the registration');
  // Its replay draws nothing, not even another check.
  await prober.send(p, { port: udp });

  // A probe with the flag but without the padding (hand-made): the tag no longer verifies, so silence.
  const short = probe(0, { cookie });
  short[4] = PROBE_FLAG_CHECK_MAPPING;
  await prober.send(short, { port: udp });
  // The probe port answers (a cookie request first: the cookie binds the source and ID, so the
  // same cookie works there) but never sends checks.
  await prober.send(probe(PROBE_FLAG_CHECK_MAPPING, { cookie }), { port: probePort });
  await waitUntil(() => prober.received.length === 4, 'probe port answered');
  t.is(typeOf(prober.received[3]!.msg), UDP_TYPE_REGISTER_ACK);
  // Anything those made the server send the device went out before the fences' answers, and reaches it before its own fence's.
  await udpFence(prober, { port: udp }, pki.masterKey);
  await udpFence(prober, { port: probePort }, pki.masterKey, 'probe');
  await udpFence(device, { port: udp }, pki.masterKey);
  t.is(device.received.length, fromDevice + 1, 'no check from the probe port, none for the replay or the tampered probe');
  t.is(prober.received.length, 4);
});

test("clients' keyless probes: answered on both ports only with the probe port on, to the source, with fewer bytes; nothing else", async (t) => {
  const probePort = await freePort();
  const withProbe = await startServer(t, pki, { probePort });
  const without = await startServer(t, pki);
  const client = await recordingUdp(t);
  const nonce = randomBytes(16);
  const p = encodeClientProbe({ nonce });
  for (const port of [withProbe.udpAddress().port, probePort]) await client.send(p, { port });
  await waitUntil(() => client.received.length === 2, 'both ports answered');
  for (const r of client.received) {
    const a = parseUdpPacket(r.msg).packet;
    t.is(a.type, UDP_TYPE_CLIENT_PROBE_ACK);
    t.like(a, { nonce, observed: { address: '127.0.0.1', port: client.port } });
    t.true(r.msg.length < p.length, 'fewer bytes than the probe (P6)');
  }
  t.is(withProbe.registry.size, 0, 'nothing recorded');
  // A server without the probe port does not answer them at all.
  await client.send(p, { port: without.udpAddress().port });
  await udpFence(client, { port: without.udpAddress().port }, pki.masterKey);
  t.is(client.received.length, 2, 'no answer from the server without the probe port');
});
