/**
 * P6: the rendezvous server's UDP port is no amplifier. Whatever one source sends (noise,
 * malformed packets, forgeries, genuine and skewed registrations, replays, packets of the
 * server's own types), the server sends back at most as many bytes as it received, and each
 * ack or cookie request is no longer than the registration it answers.
 */
import test from 'ava';
import { randomBytes, randomInt } from 'node:crypto';
import type { RendezvousServer } from '../../agent/server/server.js';
import {
  PROTOCOL_VERSION,
  UDP_MAGIC,
  UDP_MAX_BYTES,
  UDP_TYPE_COOKIE,
  UDP_TYPE_REGISTER,
  UDP_TYPE_REGISTER_ACK,
} from '../../agent/protocol/constants.js';
import { deriveRegistrationKey, mac } from '../../agent/protocol/keys.js';
import {
  AckStatus,
  encodeNotify,
  encodeRegister,
  encodeRegisterAck,
  parseUdpPacket,
  REGISTER_NONCE_BYTES,
  verifyTag,
} from '../../agent/protocol/udp-packets.js';
import { createServerPki, recordingUdp, startServer, waitUntil } from '../helpers/harness.js';
import { registerThroughCookie, udpFence } from '../helpers/udp-register.js';
import { strangerWake } from '../helpers/wake.js';

const pki = createServerPki();
const master = pki.masterKey;
const MINUTE = 60_000;
const IDS = ['A', 'P6-DEVICE', 'X'.repeat(64)];

/** Counters that together count every datagram the endpoint has handled. */
function handled(server: RendezvousServer): number {
  const c = server.registration.counters.snapshot();
  return c.accepted + c.malformed + c.badTag + c.replayed + c.clockSkew + c.challenged + c.unexpectedType;
}

interface Sent {
  readonly what: string;
  readonly bytes: Buffer;
  /** The nonce of a registration carrying a valid tag (an ack may answer it). */
  readonly nonce?: Buffer;
  readonly id?: string;
}

/** The cookie each ID's genuine registrations carry (the source showed it receives, P6). */
const cookies = new Map<string, Buffer>();

function register(id: string, key: Buffer, timestampMs: number, what: string): Sent {
  const nonce = randomBytes(REGISTER_NONCE_BYTES);
  const cookie = cookies.get(id);
  return { what, bytes: encodeRegister({ equipmentId: id, timestampMs, nonce, ...(cookie ? { cookie } : {}) }, key), nonce, id };
}

/** A header-valid packet of the given type with a random body and a tag under `key` over it. */
function taggedRandom(type: number, key: Buffer, bodyLen: number): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(UDP_MAGIC, 0);
  head[2] = PROTOCOL_VERSION;
  head[3] = type;
  const body = Buffer.concat([head, randomBytes(bodyLen)]);
  return Buffer.concat([body, mac(key, [body])]);
}

function corpus(): Sent[] {
  const out: Sent[] = [];
  const now = Date.now();
  let ts = now - 20_000;
  // Noise of every length up to past the maximum datagram the server parses.
  for (let i = 0; i < 150; i++) out.push({ what: 'random bytes', bytes: randomBytes(randomInt(1, UDP_MAX_BYTES + 64)) });
  // Genuine registrations: the shortest ID (smallest packet, 64 bytes) and the longest (64 characters).
  for (const id of IDS) {
    const key = deriveRegistrationKey(master, id);
    for (let i = 0; i < 5; i++) out.push(register(id, key, ts++, 'genuine registration'));
    out.push(register(id, key, now - 10 * MINUTE, 'genuine but skewed (past)'));
    out.push(register(id, key, now + 10 * MINUTE, 'genuine but skewed (future)'));
  }
  // Replays of genuine registrations (the server answers none of them).
  const replays = out.filter((s) => s.what === 'genuine registration').slice(0, 6);
  for (const r of replays) out.push({ what: 'replay', bytes: r.bytes });
  // Forgeries and mutations of genuine packets.
  for (let i = 0; i < 20; i++) {
    const g = register('P6-DEVICE', randomBytes(32), ts++, 'forged');
    out.push({ what: 'forged (random key)', bytes: g.bytes });
    const m = Buffer.from(register('P6-DEVICE', deriveRegistrationKey(master, 'P6-DEVICE'), ts++, 'x').bytes);
    m[randomInt(m.length)]! ^= 1 << randomInt(8);
    out.push({ what: 'genuine with one bit flipped', bytes: m });
    out.push({ what: 'genuine truncated', bytes: m.subarray(0, randomInt(1, m.length)) });
  }
  // Packets of the server's own types with valid tags, of various sizes, and a well-formed
  // register header with a random body: the server must not answer them.
  const key = deriveRegistrationKey(master, 'P6-DEVICE');
  for (let i = 0; i < 10; i++) {
    out.push({
      what: 'tagged REGISTER_ACK',
      bytes: encodeRegisterAck(
        { status: AckStatus.OK, nonce: randomBytes(8), serverTimeMs: now, observed: { address: '127.0.0.1', port: 9 } },
        key,
      ),
    });
    out.push({
      what: 'tagged NOTIFY',
      bytes: encodeNotify({ requestId: randomBytes(16), serverTimeMs: now, wake: strangerWake(now) }, key),
    });
    out.push({ what: 'tagged random ACK-typed', bytes: taggedRandom(UDP_TYPE_REGISTER_ACK, key, randomInt(0, 60)) });
    out.push({ what: 'tagged random REGISTER-typed', bytes: taggedRandom(UDP_TYPE_REGISTER, key, randomInt(0, 100)) });
    out.push({ what: 'unknown type', bytes: taggedRandom(0x7f, key, randomInt(0, 60)) });
  }
  // Shuffle so that ordering does not hide anything; genuine registrations stay in timestamp
  // order among themselves only by chance, which is fine: out-of-order ones count as replays.
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test('P6: bytes sent back to a source never exceed the bytes it sent; each ack <= its registration', async (t) => {
  const server = await startServer(t, pki);
  const to = { port: server.udpAddress().port };
  const src = await recordingUdp(t);
  let bytesSent = 0;
  const send = src.send;
  src.send = async (buf, dest) => {
    bytesSent += buf.length;
    await send(buf, dest);
  };
  // The source shows it receives first (a cookie for each ID), as a device does; those bytes count too.
  for (const id of IDS)
    cookies.set(id, (await registerThroughCookie(src, to, id, deriveRegistrationKey(master, id), Date.now() - 60_000)).cookie!);
  const before = handled(server);
  const sent = corpus();
  // In batches, waiting for each to be handled: a burst could overflow the socket's receive
  // buffer, and dropped datagrams would make the comparison meaningless.
  for (let i = 0; i < sent.length; i++) {
    await src.send(sent[i]!.bytes, to);
    if (i % 16 === 15 || i === sent.length - 1)
      await waitUntil(() => handled(server) === before + i + 1, `datagram ${i + 1} handled`, 3000, 2);
  }
  // Every answer has arrived once a fence's has (the server answers in order); the fence's bytes are not the corpus's.
  const corpusBytes = bytesSent;
  await udpFence(src, to, master);
  bytesSent = corpusBytes;

  const bytesBack = src.bytesReceived();
  t.true(bytesBack <= bytesSent, `server sent back ${bytesBack} bytes for ${bytesSent} received`);
  t.true(server.registration.counters.get('accepted') > 0, 'the corpus did include accepted registrations');
  t.true(src.received.length > 0, 'and the server did answer some of them (the property is not vacuous)');

  // Every answer to the corpus is an ack (or a cookie) to a registration with a valid tag, matched by nonce, and no larger.
  const byNonce = new Map(sent.filter((s) => s.nonce).map((s) => [s.nonce!.toString('hex'), s] as const));
  const validTagged = sent.filter((s) => s.nonce && s.what !== 'forged').length;
  const answers = src.received.slice(2 * IDS.length);
  t.true(answers.length <= validTagged, 'no more answers than registrations with a valid tag');
  for (const { msg } of answers) {
    const parsed = parseUdpPacket(msg);
    if (parsed.packet.type !== UDP_TYPE_REGISTER_ACK && parsed.packet.type !== UDP_TYPE_COOKIE) {
      t.fail(`unexpected answer of type ${parsed.packet.type}`);
      continue;
    }
    const reg = byNonce.get(parsed.packet.nonce.toString('hex'));
    if (!reg) {
      t.fail(`ack ${msg.toString('hex')} answers no registration we sent`);
      continue;
    }
    t.true(verifyTag(parsed, deriveRegistrationKey(master, reg.id!)), 'the ack is tagged for the registering device');
    t.true(msg.length <= reg.bytes.length, `ack of ${msg.length} bytes answers a ${reg.bytes.length}-byte registration (${reg.what})`);
  }
});

test('P6: the smallest possible registration (64 bytes) still gets an ack no larger than itself', async (t) => {
  const server = await startServer(t, pki);
  const to = { port: server.udpAddress().port };
  const src = await recordingUdp(t);
  const id = 'A';
  const key = deriveRegistrationKey(master, id);
  const ok = encodeRegister({ equipmentId: id, timestampMs: Date.now(), nonce: randomBytes(REGISTER_NONCE_BYTES) }, key);
  const skew = encodeRegister({ equipmentId: id, timestampMs: Date.now() + 10 * MINUTE, nonce: randomBytes(REGISTER_NONCE_BYTES) }, key);
  t.is(ok.length, 64);
  await src.send(ok, to);
  await src.send(skew, to);
  // A new source: each draws a cookie request, no larger than the registration either.
  await waitUntil(() => src.received.length === 2, 'two answers', 3000);
  for (const { msg } of src.received) t.true(msg.length <= 64, `answer is ${msg.length} bytes`);
  const { cookie } = await registerThroughCookie(src, to, id, key);
  const skewWithCookie = encodeRegister(
    { equipmentId: id, timestampMs: Date.now() + 10 * MINUTE, nonce: randomBytes(REGISTER_NONCE_BYTES), cookie: cookie! },
    key,
  );
  t.is(skewWithCookie.length, 64);
  await src.send(skewWithCookie, to);
  await waitUntil(() => src.received.length === 5, 'the clock-skew ack', 3000);
  for (const { msg } of src.received) t.true(msg.length <= 64, `answer is ${msg.length} bytes`);
  // The ack encodes the observed endpoint: an IPv6 source is the worst case (19 bytes of endpoint).
  const worst = encodeRegisterAck(
    {
      status: AckStatus.OK,
      nonce: randomBytes(8),
      serverTimeMs: Date.now(),
      observed: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
    },
    key,
  );
  t.true(worst.length <= ok.length, `an ack to an IPv6 source is ${worst.length} bytes`);
});
