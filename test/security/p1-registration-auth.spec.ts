/**
 * P1: a registration for equipment ID X is accepted only from the holder of X's registration key.
 * Forged, replayed and out-of-window registrations must not change X's entry in the equipment
 * list (which is where the server sends X's notifications), and a forger hears nothing back.
 * Datagrams are crafted here and sent with node:dgram to a real in-process server.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import type { RendezvousServer } from '../../agent/server/server.js';
import type { RegistrationCounter } from '../../agent/server/registration-endpoint.js';
import { UDP_TYPE_COOKIE, UDP_TYPE_REGISTER_ACK } from '../../agent/protocol/constants.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import {
  AckStatus,
  encodeRegister,
  parseUdpPacket,
  REGISTER_NONCE_BYTES,
  verifyTag,
  type UdpPacket,
} from '../../agent/protocol/udp-packets.js';
import { createServerPki, recordingUdp, startServer, waitUntil, type RecordingUdp } from '../helpers/harness.js';
import { answerTo, registerThroughCookie, udpFence } from '../helpers/udp-register.js';

const pki = createServerPki();
const master = pki.masterKey;
const MINUTE = 60_000;

function registration(id: string, key: Buffer, timestampMs = Date.now()): Buffer {
  return encodeRegister({ equipmentId: id, timestampMs, nonce: randomBytes(REGISTER_NONCE_BYTES) }, key);
}

async function setup(t: ExecutionContext): Promise<{ server: RendezvousServer; to: { port: number } }> {
  const server = await startServer(t, pki);
  return { server, to: { port: server.udpAddress().port } };
}

function counter(server: RendezvousServer, name: RegistrationCounter): number {
  return server.registration.counters.get(name);
}

/** Send a genuine registration for `id` from `from` (with the cookie a new source is asked for) and wait until the server has accepted it. */
async function registerGenuinely(
  server: RendezvousServer,
  from: RecordingUdp,
  to: { port: number },
  id: string,
  timestampMs = Date.now(),
): Promise<Buffer> {
  const before = counter(server, 'accepted');
  const { packet } = await registerThroughCookie(from, to, id, deriveRegistrationKey(master, id), timestampMs);
  await waitUntil(() => counter(server, 'accepted') === before + 1, 'the genuine registration to be accepted');
  return packet;
}

test('P1a: forged registrations (wrong key, altered after signing) leave the entry alone and count as badTag', async (t) => {
  const { server, to } = await setup(t);
  const id = 'P1A-DEVICE';
  const genuine = await recordingUdp(t);
  await registerGenuinely(server, genuine, to, id);
  const entry = server.registry.get(id);
  t.truthy(entry);
  t.is(entry?.port, genuine.port);

  const forger = await recordingUdp(t);
  // The other device registers too: its key, valid at the server, must not verify this ID.
  await registerGenuinely(server, await recordingUdp(t), to, 'P1A-OTHER');
  let ts = Date.now() + 1000; // newer than the genuine one and inside the window: only the tag stands in the way
  const wrongKeys: [string, Buffer][] = [
    ['a random key', randomBytes(32)],
    ['the master key itself', master],
    ["another device's registration key", deriveRegistrationKey(master, 'P1A-OTHER')],
    ['the same ID derived from another master key', deriveRegistrationKey(randomBytes(32), id)],
    ['an all-zero key', Buffer.alloc(32)],
  ];
  const forgeries: [string, Buffer][] = wrongKeys.map(([what, key]) => [what, registration(id, key, ts++)]);
  // A genuine packet altered after signing: its timestamp bumped by 1 ms, or its tag flipped.
  const altered = registration(id, deriveRegistrationKey(master, id), ts++);
  altered[4 + 1 + id.length + 7]! ^= 0x01;
  forgeries.push(['a genuine packet with its timestamp altered', altered]);
  const flipped = registration(id, deriveRegistrationKey(master, id), ts++);
  flipped[flipped.length - 1]! ^= 0x80;
  forgeries.push(['a genuine packet with a flipped tag bit', flipped]);
  // A forgery for an ID nobody has registered must not create an entry either.
  forgeries.push(['a new ID with a random key', registration('P1A-NEWCOMER', randomBytes(32), ts++)]);

  for (const [, packet] of forgeries) await forger.send(packet, to);
  await waitUntil(() => counter(server, 'badTag') === forgeries.length, `${forgeries.length} datagrams counted as badTag`);

  t.deepEqual(server.registry.get(id), entry, 'the entry (mapping and last timestamp) is unchanged');
  t.is(server.registry.get('P1A-NEWCOMER'), undefined, 'no entry was created for a forged new ID');
  t.is(server.registry.size, 2, 'the device and the other device');
  t.is(counter(server, 'accepted'), 2, 'only the two genuine registrations were accepted');
  t.is(counter(server, 'badTag'), forgeries.length);
  t.is(counter(server, 'malformed'), 0, 'the forgeries were well formed: the tag alone rejected them');
});

test('P1b: a captured registration replayed from another socket does not move the entry (replayed)', async (t) => {
  const { server, to } = await setup(t);
  const id = 'P1B-DEVICE';
  const a = await recordingUdp(t);
  const b = await recordingUdp(t);
  const now = Date.now();

  const first = await registerGenuinely(server, a, to, id, now - 2000);
  const entry1 = server.registry.get(id);
  t.is(entry1?.port, a.port);

  // Replay of the latest accepted registration, from B.
  await b.send(first, to);
  await waitUntil(() => counter(server, 'replayed') === 1, 'the replay to be counted');
  t.deepEqual(server.registry.get(id), entry1, 'a replay of the latest registration does not move the entry');

  // The device registers again from A; B replays both the old and the new packet.
  const second = await registerGenuinely(server, a, to, id, now - 1000);
  const entry2 = server.registry.get(id);
  t.is(entry2?.port, a.port);
  await b.send(first, to);
  await b.send(second, to);
  await waitUntil(() => counter(server, 'replayed') === 3, 'both replays to be counted');
  t.deepEqual(server.registry.get(id), entry2, 'replays of older and latest registrations do not move the entry');
  t.is(counter(server, 'accepted'), 2);

  await udpFence(b, to, master);
  t.is(b.received.length, 0, 'a replay gets no answer');

  // Control: the key holder itself may move (e.g. its NAT mapping changed), and that is seen.
  await registerGenuinely(server, b, to, id, now);
  t.is(server.registry.get(id)?.port, b.port, 'a fresh genuine registration from B does move the entry');
});

test('P1c: a registration far outside the window changes nothing; only a source that has shown it receives learns the server time', async (t) => {
  const { server, to } = await setup(t);
  const id = 'P1C-DEVICE';
  const key = deriveRegistrationKey(master, id);
  const a = await recordingUdp(t);
  await registerGenuinely(server, a, to, id);
  const entry = server.registry.get(id);
  const tagged = (p: { msg: Buffer }, forId: string): UdpPacket => {
    const parsed = parseUdpPacket(p.msg);
    t.true(verifyTag(parsed, deriveRegistrationKey(master, forId)), "answers are tagged with the device's key");
    return parsed.packet;
  };

  // The registered mapping (it showed it receives) gets a CLOCK_SKEW ack with the server time.
  const fromA = a.received.length;
  const skewedNonce = randomBytes(REGISTER_NONCE_BYTES);
  await a.send(encodeRegister({ equipmentId: id, timestampMs: Date.now() + 10 * MINUTE, nonce: skewedNonce }, key), to);
  const skewAck = await answerTo(a, skewedNonce);
  t.is(skewAck.type, UDP_TYPE_REGISTER_ACK);
  if (skewAck.type === UDP_TYPE_REGISTER_ACK) t.is(skewAck.status, AckStatus.CLOCK_SKEW);
  t.true(Math.abs(skewAck.serverTimeMs - Date.now()) < 5000, 'the ack carries the server time');
  t.is(a.received.length, fromA + 1);

  // Another source: an old timestamp (what a replay carries) draws nothing; a newer one only a cookie.
  const b = await recordingUdp(t);
  await b.send(registration(id, key, Date.now() - 10 * MINUTE), to);
  const otherId = 'P1C-UNLISTED';
  await b.send(registration(id, key, Date.now() + 10 * MINUTE), to);
  await b.send(registration(otherId, deriveRegistrationKey(master, otherId), Date.now() + 10 * MINUTE), to);
  await waitUntil(() => b.received.length === 2 && counter(server, 'replayed') === 1, 'two cookies and one silent drop', 3000);
  await udpFence(b, to, master);
  t.is(b.received.length, 2, 'nothing for the old timestamp');
  const [c1, c2] = [tagged(b.received[0]!, id), tagged(b.received[1]!, otherId)];
  t.is(c1.type, UDP_TYPE_COOKIE);
  t.is(c2.type, UDP_TYPE_COOKIE);
  if (c1.type === UDP_TYPE_COOKIE) {
    t.true(Math.abs(c1.serverTimeMs - Date.now()) < 5000, 'the cookie carries the server time');
    // With the cookie, the skewed source is told the time in a CLOCK_SKEW ack.
    const n = randomBytes(REGISTER_NONCE_BYTES);
    await b.send(encodeRegister({ equipmentId: id, timestampMs: Date.now() + 10 * MINUTE, nonce: n, cookie: c1.cookie }, key), to);
    const ack = await answerTo(b, n);
    t.is(ack.type, UDP_TYPE_REGISTER_ACK);
  }
  t.is(counter(server, 'accepted'), 1);
  t.deepEqual(server.registry.get(id), entry, 'the entry is unchanged');
  t.is(server.registry.get(otherId), undefined, 'no entry is created from a skewed registration');
});

test('P1d: the server sends not a single byte to the source of a bad-tag registration', async (t) => {
  const { server, to } = await setup(t);
  const id = 'P1D-DEVICE';
  const forger = await recordingUdp(t);
  const forgeries = [
    registration(id, randomBytes(32)),
    registration(id, master),
    // Skewed and bad-tagged: must not draw a CLOCK_SKEW ack (the tag is checked first).
    registration(id, randomBytes(32), Date.now() - 10 * MINUTE),
    registration(id, randomBytes(32), Date.now() + 10 * MINUTE),
  ];
  for (const p of forgeries) await forger.send(p, to);
  await waitUntil(() => counter(server, 'badTag') === forgeries.length, 'the forgeries to be counted');
  await udpFence(forger, to, master);
  t.is(forger.received.length, 0, `received ${forger.bytesReceived()} bytes`);
  t.is(server.registry.size, 0);

  // Control: the same socket does hear answers to a genuine registration, so silence above is meaningful.
  await registerThroughCookie(forger, to, id, deriveRegistrationKey(master, id));
  t.true(forger.received.length >= 1);
  t.is(server.registry.get(id)?.port, forger.port);
});
