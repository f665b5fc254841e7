import { blake2sKey, blake2sMac } from '../../agent/protocol/blake2s.js';
import test from 'ava';
import { fc, testProp } from '@fast-check/ava';
import { SocketAddress } from 'node:net';
import { ProtocolError } from '../../agent/common/errors.js';
import {
  PROTOCOL_VERSION,
  REGISTER_MIN_BYTES,
  UDP_MAGIC,
  UDP_MAX_BYTES,
  UDP_TYPE_NOTIFY,
  UDP_TYPE_REGISTER,
  UDP_TYPE_REGISTER_ACK,
} from '../../agent/protocol/constants.js';
import {
  AckStatus,
  encodeCookie,
  encodeNotify,
  encodeRegister,
  encodeRegisterAck,
  parseUdpPacket,
  REGISTER_NONCE_BYTES,
  verifyTag,
} from '../../agent/protocol/udp-packets.js';
import {
  bytesArb,
  endpointArb,
  equipmentIdArb,
  flipBit,
  ipBytes,
  ipv4Arb,
  ipv6Arb,
  isV4Mapped,
  keyArb,
  parsesOrProtocolError,
  portArb,
  throwsProtocolError,
  timestampArb,
} from '../helpers/protocol-arbitraries.js';

const KEY = Buffer.alloc(32, 7);
const nonceArb = bytesArb(REGISTER_NONCE_BYTES);
const ZERO_WAKE = { nonce: Buffer.alloc(16), timestampMs: 0, tag: Buffer.alloc(16) };
const wakeArb = fc.record({ nonce: bytesArb(16), timestampMs: timestampArb, tag: bytesArb(16) });
const ackStatusArb = fc.constantFrom(AckStatus.OK, AckStatus.CLOCK_SKEW);

/** The tag computed directly with keyed BLAKE2s-128 (blake2s.spec.ts checks that against references). */
function tag16(key: Uint8Array, body: Uint8Array): Buffer {
  return Buffer.from(blake2sMac(blake2sKey(key, 16), body, new Uint8Array(16)));
}

/** A register packet built by hand, `total` bytes long with zero padding, correctly tagged. */
function handRegister(id: string, ts: number, nonce: Buffer, total: number, key: Uint8Array): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(UDP_MAGIC, 0);
  head[2] = PROTOCOL_VERSION;
  head[3] = UDP_TYPE_REGISTER;
  const tsb = Buffer.alloc(8);
  tsb.writeBigUInt64BE(BigInt(ts));
  const body = Buffer.concat([head, Buffer.of(Buffer.byteLength(id)), Buffer.from(id), tsb, nonce]);
  const padded = Buffer.concat([body, Buffer.alloc(Math.max(0, total - 16 - body.length))]);
  return Buffer.concat([padded, tag16(key, padded)]);
}

/** Any valid UDP packet with the key that tags it. */
const anyPacketArb = fc.oneof(
  fc
    .record({ equipmentId: equipmentIdArb, timestampMs: timestampArb, nonce: nonceArb, key: keyArb })
    .map(({ key, ...p }) => ({ key, bytes: encodeRegister(p, key) })),
  fc
    .record({ status: ackStatusArb, nonce: nonceArb, serverTimeMs: timestampArb, observed: endpointArb, key: keyArb })
    .map(({ key, ...p }) => ({ key, bytes: encodeRegisterAck(p, key) })),
  fc
    .record({ requestId: bytesArb(16), serverTimeMs: timestampArb, wake: wakeArb, key: keyArb })
    .map(({ key, ...p }) => ({ key, bytes: encodeNotify(p, key) })),
  fc
    .record({ nonce: nonceArb, serverTimeMs: timestampArb, cookie: bytesArb(16), key: keyArb })
    .map(({ key, ...p }) => ({ key, bytes: encodeCookie(p, key) })),
);

// --- round trips ---

testProp(
  'REGISTER round-trips: id, timestamp, nonce, cookie; tag verifies; layout is header|id|ts|nonce|cookie|zero pad|tag',
  [equipmentIdArb, timestampArb, nonceArb, keyArb, fc.option(bytesArb(16), { nil: undefined })],
  (t, equipmentId, timestampMs, nonce, key, cookie) => {
    const bytes = encodeRegister({ equipmentId, timestampMs, nonce, ...(cookie ? { cookie } : {}) }, key);
    const parsed = parseUdpPacket(bytes);
    t.deepEqual(parsed.packet, { type: UDP_TYPE_REGISTER, equipmentId, timestampMs, nonce, cookie: cookie ?? Buffer.alloc(16) });
    t.true(verifyTag(parsed, key));
    // Independent layout check.
    t.is(bytes.readUInt16BE(0), UDP_MAGIC);
    t.is(bytes[2], PROTOCOL_VERSION);
    t.is(bytes[3], UDP_TYPE_REGISTER);
    t.is(bytes[4], equipmentId.length);
    t.is(bytes.subarray(5, 5 + equipmentId.length).toString('latin1'), equipmentId);
    t.is(bytes.readBigUInt64BE(5 + equipmentId.length), BigInt(timestampMs));
    t.deepEqual(bytes.subarray(5 + equipmentId.length + 16, 5 + equipmentId.length + 32), cookie ?? Buffer.alloc(16));
    const unpadded = 4 + 1 + equipmentId.length + 8 + 8 + 16 + 16;
    t.is(bytes.length, Math.max(REGISTER_MIN_BYTES, unpadded));
    t.true(
      bytes.subarray(unpadded - 16, bytes.length - 16).every((b) => b === 0),
      'padding is zero',
    );
    t.deepEqual(bytes.subarray(bytes.length - 16), tag16(key, bytes.subarray(0, bytes.length - 16)));
  },
);

testProp(
  'REGISTER_ACK round-trips with an IPv4 observed endpoint',
  [ackStatusArb, nonceArb, timestampArb, ipv4Arb, portArb, keyArb],
  (t, status, nonce, serverTimeMs, address, port, key) => {
    const bytes = encodeRegisterAck({ status, nonce, serverTimeMs, observed: { address, port } }, key);
    t.is(bytes.length, 4 + 1 + 8 + 8 + 1 + 4 + 2 + 16);
    const parsed = parseUdpPacket(bytes);
    t.deepEqual(parsed.packet, { type: UDP_TYPE_REGISTER_ACK, status, nonce, serverTimeMs, observed: { address, port } });
    t.true(verifyTag(parsed, key));
  },
);

testProp(
  'REGISTER_ACK round-trips with an IPv6 observed endpoint (any text form -> same 16 bytes, canonical text)',
  [ackStatusArb, nonceArb, timestampArb, ipv6Arb, portArb, keyArb],
  (t, status, nonce, serverTimeMs, address, port, key) => {
    const bytes = encodeRegisterAck({ status, nonce, serverTimeMs, observed: { address, port } }, key);
    const parsed = parseUdpPacket(bytes);
    t.true(verifyTag(parsed, key));
    if (parsed.packet.type !== UDP_TYPE_REGISTER_ACK) return t.fail('not an ack');
    t.is(parsed.packet.status, status);
    t.deepEqual(parsed.packet.nonce, nonce);
    t.is(parsed.packet.serverTimeMs, serverTimeMs);
    t.is(parsed.packet.observed.port, port);
    const want = ipBytes(address);
    if (isV4Mapped(want)) {
      // IPv4-mapped addresses come back as plain IPv4.
      t.is(parsed.packet.observed.address, [...want.subarray(12)].join('.'));
    } else {
      t.is(bytes.length, 4 + 1 + 8 + 8 + 1 + 16 + 2 + 16);
      t.deepEqual(ipBytes(parsed.packet.observed.address), want);
      t.is(parsed.packet.observed.address, new SocketAddress({ address, family: 'ipv6' }).address);
    }
  },
);

test('REGISTER_ACK: ::ffff:a.b.c.d is normalised to a.b.c.d and sent as IPv4', (t) => {
  const nonce = Buffer.alloc(8, 1);
  const mapped = encodeRegisterAck(
    { status: AckStatus.OK, nonce, serverTimeMs: 5, observed: { address: '::ffff:192.0.2.33', port: 4242 } },
    KEY,
  );
  const plain = encodeRegisterAck({ status: AckStatus.OK, nonce, serverTimeMs: 5, observed: { address: '192.0.2.33', port: 4242 } }, KEY);
  t.deepEqual(mapped, plain);
  const upper = encodeRegisterAck(
    { status: AckStatus.OK, nonce, serverTimeMs: 5, observed: { address: '::FFFF:192.0.2.33', port: 4242 } },
    KEY,
  );
  t.deepEqual(upper, plain);
  const parsed = parseUdpPacket(mapped);
  t.deepEqual(parsed.packet, {
    type: UDP_TYPE_REGISTER_ACK,
    status: AckStatus.OK,
    nonce,
    serverTimeMs: 5,
    observed: { address: '192.0.2.33', port: 4242 },
  });
  // The hex form of a mapped address is also read back as IPv4.
  const hex = parseUdpPacket(
    encodeRegisterAck({ status: AckStatus.OK, nonce, serverTimeMs: 5, observed: { address: '::ffff:c000:221', port: 4242 } }, KEY),
  );
  t.like(hex.packet, { observed: { address: '192.0.2.33', port: 4242 } });
});

testProp(
  'NOTIFY round-trips, with the wake proof',
  [bytesArb(16), timestampArb, wakeArb, keyArb],
  (t, requestId, serverTimeMs, wake, key) => {
    const bytes = encodeNotify({ requestId, serverTimeMs, wake }, key);
    t.is(bytes.length, 4 + 16 + 8 + 40 + 16);
    const parsed = parseUdpPacket(bytes);
    t.deepEqual(parsed.packet, { type: UDP_TYPE_NOTIFY, requestId, serverTimeMs, wake });
    t.true(verifyTag(parsed, key));
  },
);

test('timestamps: MAX_SAFE_INTEGER is accepted, 2^53 is a ProtocolError', (t) => {
  const nonce = Buffer.alloc(8);
  const ok = parseUdpPacket(encodeRegister({ equipmentId: 'dev-1', timestampMs: Number.MAX_SAFE_INTEGER, nonce }, KEY));
  t.like(ok.packet, { timestampMs: Number.MAX_SAFE_INTEGER });
  const err = throwsProtocolError(t, () =>
    parseUdpPacket(encodeNotify({ requestId: Buffer.alloc(16), serverTimeMs: 2 ** 53, wake: ZERO_WAKE }, KEY)),
  );
  t.is(err?.field, 'udp.serverTime');
});

// --- authentication ---

testProp('tag does not verify under a different key', [anyPacketArb, keyArb], (t, { key, bytes }, other) => {
  fc.pre(!other.equals(key));
  const parsed = parseUdpPacket(bytes);
  t.true(verifyTag(parsed, key));
  t.false(verifyTag(parsed, other));
});

testProp(
  'flipping any single bit is rejected: ProtocolError or the tag fails (every bit of the packet)',
  [anyPacketArb],
  (t, { key, bytes }) => {
    let accepted = 0;
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const parsed = parsesOrProtocolError(t, () => parseUdpPacket(flipBit(bytes, bit)), `bit ${bit}`);
      if (parsed && verifyTag(parsed, key)) accepted++;
    }
    t.is(accepted, 0);
  },
  { numRuns: 40 },
);

// --- malformed input ---

testProp(
  'every truncation of a valid packet is a ProtocolError (and nothing else)',
  [anyPacketArb],
  (t, { bytes }) => {
    for (let n = 0; n < bytes.length; n++) {
      const err = throwsProtocolError(t, () => parseUdpPacket(bytes.subarray(0, n)), `prefix ${n}/${bytes.length}`);
      t.true(err instanceof ProtocolError);
    }
  },
  { numRuns: 60 },
);

testProp(
  'REGISTER with its ID length byte off by a few: ProtocolError or the tag fails',
  [equipmentIdArb, timestampArb, nonceArb, keyArb, fc.integer({ min: -4, max: 4 }).filter((d) => d !== 0)],
  (t, equipmentId, timestampMs, nonce, key, delta) => {
    const bytes = encodeRegister({ equipmentId, timestampMs, nonce }, key);
    const bad = Buffer.from(bytes);
    bad[4] = (bad[4]! + delta + 256) % 256;
    const parsed = parsesOrProtocolError(t, () => parseUdpPacket(bad));
    t.true(parsed === undefined || !verifyTag(parsed, key));
  },
);

test('ID length byte out of range (0, 65, 255) is a ProtocolError naming the field', (t) => {
  const bytes = encodeRegister({ equipmentId: 'abc', timestampMs: 1, nonce: Buffer.alloc(8) }, KEY);
  for (const len of [0, 65, 255]) {
    const bad = Buffer.from(bytes);
    bad[4] = len;
    const err = throwsProtocolError(t, () => parseUdpPacket(bad), `len ${len}`);
    t.truthy(err?.field.startsWith('udp.equipmentId'), `len ${len}: ${err?.field}`);
  }
});

test('oversize packets are rejected; exactly UDP_MAX_BYTES is not', (t) => {
  const big = handRegister('dev', 1, Buffer.alloc(8), UDP_MAX_BYTES + 1, KEY);
  t.is(big.length, UDP_MAX_BYTES + 1);
  const err = throwsProtocolError(t, () => parseUdpPacket(big));
  t.regex(err?.message ?? '', /oversized/);
  throwsProtocolError(t, () => parseUdpPacket(Buffer.alloc(4096)));
  throwsProtocolError(t, () =>
    parseUdpPacket(
      Buffer.concat([encodeNotify({ requestId: Buffer.alloc(16), serverTimeMs: 1, wake: ZERO_WAKE }, KEY), Buffer.alloc(UDP_MAX_BYTES)]),
    ),
  );
  const max = handRegister('dev', 1, Buffer.alloc(8), UDP_MAX_BYTES, KEY);
  const parsed = parseUdpPacket(max);
  t.like(parsed.packet, { type: UDP_TYPE_REGISTER, equipmentId: 'dev', timestampMs: 1 });
  t.true(verifyTag(parsed, KEY));
});

test('REGISTER shorter than REGISTER_MIN_BYTES is refused even with a valid tag', (t) => {
  const short = handRegister('dev', 1, Buffer.alloc(8), REGISTER_MIN_BYTES - 1, KEY);
  t.is(short.length, REGISTER_MIN_BYTES - 1);
  throwsProtocolError(t, () => parseUdpPacket(short));
  t.notThrows(() => parseUdpPacket(handRegister('dev', 1, Buffer.alloc(8), REGISTER_MIN_BYTES, KEY)));
});

test('REGISTER with non-zero padding is refused', (t) => {
  const bytes = handRegister('dev', 1, Buffer.alloc(8), REGISTER_MIN_BYTES, KEY);
  const body = Buffer.from(bytes.subarray(0, bytes.length - 16));
  body[body.length - 1] = 1;
  const err = throwsProtocolError(t, () => parseUdpPacket(Buffer.concat([body, tag16(KEY, body)])));
  t.is(err?.field, 'udp.padding');
});

test('bad magic, version, type and ack status are ProtocolErrors naming the field', (t) => {
  const ack = encodeRegisterAck(
    { status: AckStatus.OK, nonce: Buffer.alloc(8), serverTimeMs: 1, observed: { address: '192.0.2.1', port: 1 } },
    KEY,
  );
  const cases: Array<[number, number, string]> = [
    [0, 0x51, 'udp.magic'],
    [2, PROTOCOL_VERSION + 1, 'udp.version'],
    [3, 0x7f, 'udp.type'],
    [4, 2, 'udp.status'],
  ];
  for (const [offset, value, field] of cases) {
    const bad = Buffer.from(ack);
    bad[offset] = value;
    t.is(throwsProtocolError(t, () => parseUdpPacket(bad))?.field, field);
  }
  const v6 = encodeRegisterAck(
    { status: AckStatus.OK, nonce: Buffer.alloc(8), serverTimeMs: 1, observed: { address: '2001:db8::1', port: 1 } },
    KEY,
  );
  const badFamily = Buffer.from(v6);
  badFamily[4 + 1 + 8 + 8] = 5;
  t.is(throwsProtocolError(t, () => parseUdpPacket(badFamily))?.field, 'observed.family');
});

testProp(
  'random bytes: parseUdpPacket returns or throws a ProtocolError, never anything else',
  [
    fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      // Random bodies behind a valid header, to get past the magic/version checks.
      fc
        .tuple(fc.constantFrom(UDP_TYPE_REGISTER, UDP_TYPE_REGISTER_ACK, UDP_TYPE_NOTIFY), fc.uint8Array({ maxLength: 120 }))
        .map(([type, rest]) => Buffer.concat([Buffer.of(0x50, 0x4c, PROTOCOL_VERSION, type), rest])),
    ),
  ],
  (t, bytes) => {
    parsesOrProtocolError(t, () => parseUdpPacket(bytes));
    t.pass();
  },
);

// --- P6: no amplification ---

testProp(
  'a registration is always at least REGISTER_MIN_BYTES',
  [equipmentIdArb, timestampArb, nonceArb, keyArb],
  (t, equipmentId, timestampMs, nonce, key) => {
    t.true(encodeRegister({ equipmentId, timestampMs, nonce }, key).length >= REGISTER_MIN_BYTES);
  },
);

test('P6: the largest ack (IPv6 observed endpoint) is no longer than the shortest registration', (t) => {
  const shortest = encodeRegister({ equipmentId: 'a', timestampMs: 0, nonce: Buffer.alloc(8) }, KEY);
  t.is(shortest.length, REGISTER_MIN_BYTES);
  const largest = encodeRegisterAck(
    {
      status: AckStatus.CLOCK_SKEW,
      nonce: Buffer.alloc(8, 0xff),
      serverTimeMs: Number.MAX_SAFE_INTEGER,
      observed: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe', port: 65535 },
    },
    KEY,
  );
  t.is(largest.length, 56);
  t.true(largest.length <= shortest.length, `ack ${largest.length} > registration ${shortest.length}`);
});

testProp(
  'P6: the ack for any registration is never longer than that registration',
  [equipmentIdArb, timestampArb, nonceArb, keyArb, ackStatusArb, timestampArb, endpointArb],
  (t, equipmentId, timestampMs, nonce, key, status, serverTimeMs, observed) => {
    const reg = encodeRegister({ equipmentId, timestampMs, nonce }, key);
    const parsed = parseUdpPacket(reg);
    if (parsed.packet.type !== UDP_TYPE_REGISTER) return t.fail('not a register');
    const ack = encodeRegisterAck({ status, nonce: parsed.packet.nonce, serverTimeMs, observed }, key);
    t.true(ack.length <= reg.length, `ack ${ack.length} > registration ${reg.length}`);
  },
);

test('PROBE and MAPPING_CHECK round-trip; a probe is padded like a registration (P6) and a check is smaller', async (t) => {
  const { encodeProbe, encodeMappingCheck } = await import('../../agent/protocol/udp-packets.js');
  const { UDP_TYPE_PROBE, UDP_TYPE_MAPPING_CHECK, REGISTER_MIN_BYTES } = await import('../../agent/protocol/constants.js');
  const key = Buffer.alloc(32, 7);
  const nonce = Buffer.alloc(8, 9);
  const probe = encodeProbe({ flags: 1, equipmentId: 'dev', timestampMs: 123, nonce }, key);
  t.true(probe.length >= REGISTER_MIN_BYTES);
  const p = parseUdpPacket(probe);
  t.deepEqual(p.packet, { type: UDP_TYPE_PROBE, flags: 1, equipmentId: 'dev', timestampMs: 123, nonce, cookie: Buffer.alloc(16) });
  t.true(verifyTag(p, key));
  const check = encodeMappingCheck({ nonce, serverTimeMs: 5 }, key);
  t.true(check.length < probe.length);
  t.deepEqual(parseUdpPacket(check).packet, { type: UDP_TYPE_MAPPING_CHECK, nonce, serverTimeMs: 5 });
});

test('COOKIE round-trips and is smaller than the smallest registration or probe (P6)', async (t) => {
  const { encodeCookie } = await import('../../agent/protocol/udp-packets.js');
  const { UDP_TYPE_COOKIE, REGISTER_MIN_BYTES } = await import('../../agent/protocol/constants.js');
  const key = Buffer.alloc(32, 7);
  const nonce = Buffer.alloc(8, 9);
  const cookie = Buffer.alloc(16, 3);
  const bytes = encodeCookie({ nonce, serverTimeMs: 77, cookie }, key);
  t.is(bytes.length, 4 + 8 + 8 + 16 + 16);
  t.true(bytes.length < REGISTER_MIN_BYTES);
  const parsed = parseUdpPacket(bytes);
  t.deepEqual(parsed.packet, { type: UDP_TYPE_COOKIE, nonce, serverTimeMs: 77, cookie });
  t.true(verifyTag(parsed, key));
  t.throws(() => encodeCookie({ nonce, serverTimeMs: 77, cookie: Buffer.alloc(15) }, key), { instanceOf: RangeError });
});

test('CLIENT_PROBE and its ack round-trip; the ack (IPv6 observed, the largest) is smaller than the probe (P6); the trailer must be zero', async (t) => {
  const { encodeClientProbe, encodeClientProbeAck } = await import('../../agent/protocol/udp-packets.js');
  const { UDP_TYPE_CLIENT_PROBE, UDP_TYPE_CLIENT_PROBE_ACK } = await import('../../agent/protocol/constants.js');
  const nonce = Buffer.alloc(16, 5);
  const probe = encodeClientProbe({ nonce });
  t.is(probe.length, REGISTER_MIN_BYTES);
  t.deepEqual(parseUdpPacket(probe).packet, { type: UDP_TYPE_CLIENT_PROBE, nonce });
  const observed = { address: '2001:db8::1', port: 4242 };
  const ack = encodeClientProbeAck({ nonce, observed });
  t.true(ack.length < probe.length, `${ack.length} < ${probe.length}`);
  t.deepEqual(parseUdpPacket(ack).packet, { type: UDP_TYPE_CLIENT_PROBE_ACK, nonce, observed });
  for (const bytes of [probe, ack]) {
    const bad = Buffer.from(bytes);
    bad[bad.length - 1] = 1;
    t.is(throwsProtocolError(t, () => parseUdpPacket(bad))?.field, 'udp.trailer');
  }
  t.is(throwsProtocolError(t, () => parseUdpPacket(probe.subarray(0, REGISTER_MIN_BYTES - 1)))?.field, 'udp.clientProbe');
  t.throws(() => encodeClientProbe({ nonce: Buffer.alloc(8) }), { instanceOf: RangeError });
});
