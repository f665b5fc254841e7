/**
 * The codec of what server nodes exchange through Redis (agent/server/node-messages.ts): every
 * message, pending record and relay offer survives a round trip, and every malformed field is
 * rejected with a ProtocolError that names it, whatever else the text holds.
 */
import test from 'ava';
import { fc, testProp } from '@fast-check/ava';
import {
  decodeNodeMessage,
  decodePendingRecord,
  decodeRelayOffer,
  encodeNodeMessage,
  encodePendingRecord,
  encodeRelayOffer,
  NODE_MESSAGE_MAX_BYTES,
  type NodeMessage,
  type PendingRecord,
} from '../../agent/server/node-messages.js';
import { CandidateKind } from '../../agent/protocol/frames.js';
import { Status } from '../../agent/protocol/status.js';
import { RefuseReason } from '../../agent/protocol/udp-packets.js';
import {
  bytesArb,
  equipmentIdArb,
  ipv4Arb,
  ipv6Arb,
  nonZeroPortArb,
  throwsProtocolError,
  timestampArb,
} from '../helpers/protocol-arbitraries.js';

const NODE_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-';
const nodeArb = fc.string({ unit: fc.constantFrom(...NODE_CHARS), minLength: 1, maxLength: 64 });
const requestIdArb = bytesArb(16).map((b) => b.toString('hex'));
const addressArb = fc.oneof(ipv4Arb, ipv6Arb);
const wakeArb = fc.record({ nonce: bytesArb(16), timestampMs: timestampArb, tag: bytesArb(16) });
const candidateArb = fc.record({
  kind: fc.constantFrom(CandidateKind.PUNCH, CandidateKind.LISTEN),
  endpoint: fc.record({ address: addressArb, port: nonZeroPortArb }),
});

const messageArb: fc.Arbitrary<NodeMessage> = fc.oneof(
  fc.record({
    kind: fc.constant('notify' as const),
    requestId: requestIdArb,
    equipmentId: equipmentIdArb,
    deviceAddress: addressArb,
    devicePort: nonZeroPortArb,
    fromNode: nodeArb,
    wake: wakeArb,
  }),
  fc.record({ kind: fc.constant('attached' as const), requestId: requestIdArb, byNode: nodeArb }),
  fc.record({
    kind: fc.constant('taken' as const),
    equipmentId: equipmentIdArb,
    byNode: nodeArb,
    timestampMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  }),
  fc.record({
    kind: fc.constant('refused' as const),
    requestId: requestIdArb,
    byNode: nodeArb,
    reason: fc.constantFrom(...Object.values(RefuseReason)),
  }),
  fc.record({
    kind: fc.constant('verdict' as const),
    requestId: requestIdArb,
    byNode: nodeArb,
    status: fc.constantFrom(...Object.values(Status)),
    candidates: fc.array(candidateArb, { maxLength: 8 }),
  }),
);

const pendingArb: fc.Arbitrary<PendingRecord> = fc.record({
  equipmentId: equipmentIdArb,
  clientNode: nodeArb,
  clientAddress: addressArb,
  clientPort: nonZeroPortArb,
  advertisedPort: nonZeroPortArb,
  sealedRequest: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
  notifiedAtMs: timestampArb,
});

testProp('every node message survives encode and decode', [messageArb], (t, m) => {
  t.deepEqual(decodeNodeMessage(encodeNodeMessage(m)), m);
});

testProp('every pending record survives encode and decode', [pendingArb], (t, p) => {
  t.deepEqual(decodePendingRecord(encodePendingRecord(p)), p);
});

testProp(
  'every relay offer survives encode and decode',
  [fc.record({ node: nodeArb, tlsHost: fc.oneof(ipv4Arb, ipv6Arb, fc.domain()), tlsPort: nonZeroPortArb })],
  (t, o) => {
    t.deepEqual(decodeRelayOffer(encodeRelayOffer(o)), o);
  },
);

test('a verdict carries only PUNCH and LISTEN candidates to the other node', (t) => {
  const m: NodeMessage = {
    kind: 'verdict',
    requestId: 'ab'.repeat(16),
    byNode: 'n1',
    status: Status.OK,
    candidates: [
      { kind: CandidateKind.OBSERVED, endpoint: { address: '192.0.2.1', port: 9 } },
      { kind: CandidateKind.LISTEN, endpoint: { address: '192.0.2.1', port: 10 } },
    ],
  };
  t.deepEqual((decodeNodeMessage(encodeNodeMessage(m)) as typeof m).candidates, [m.candidates[1]]);
});

const RID = 'ab'.repeat(16);
/** nonce, timestamp 2^40 ms, tag */
const WAKE = `${'cd'.repeat(16)}0000010000000000${'ef'.repeat(16)}`;
const VALID = {
  notify: { t: 'notify', r: RID, d: 'TV-1', a: '203.0.113.5', p: 4000, from: 'node-a', w: WAKE },
  attached: { t: 'attached', r: RID, by: 'node-b' },
  taken: { t: 'taken', d: 'TV-1', by: 'node-b', ts: 1 },
  refused: { t: 'refused', r: RID, by: 'node-b', why: 1 },
  verdict: { t: 'verdict', r: RID, s: 0, by: 'node-b', c: [[1, '198.51.100.7', 5000]] },
  pending: { d: 'TV-1', o: 'node-a', ca: '198.51.100.7', cp: 40000, ap: 5000, s: 'c2VhbGVk', at: 1 },
  offer: { node: 'node-a', tls: '[2001:db8::1]:7443' },
} as const;

const decoders = {
  notify: decodeNodeMessage,
  attached: decodeNodeMessage,
  taken: decodeNodeMessage,
  refused: decodeNodeMessage,
  verdict: decodeNodeMessage,
  pending: decodePendingRecord,
  offer: decodeRelayOffer,
} as const;

test('the valid examples the malformed cases start from decode', (t) => {
  for (const [kind, v] of Object.entries(VALID)) t.notThrows(() => decoders[kind as keyof typeof VALID](JSON.stringify(v)), kind);
});

/** [which, wire key, bad value, the field the error must name]; undefined deletes the key. */
const MALFORMED: readonly [keyof typeof VALID, string, unknown, string][] = [
  ['notify', 'r', 'ab'.repeat(15), 'message.requestId'],
  ['notify', 'r', 'AB'.repeat(16), 'message.requestId'],
  ['notify', 'r', 7, 'message.requestId'],
  ['notify', 'r', undefined, 'message.requestId'],
  ['notify', 'd', 'TV 1', 'message.equipmentId'],
  ['notify', 'd', 'x'.repeat(65), 'message.equipmentId'],
  ['notify', 'd', '', 'message.equipmentId'],
  ['notify', 'a', '203.0.113', 'message.deviceAddress'],
  ['notify', 'a', null, 'message.deviceAddress'],
  ['notify', 'p', 0, 'message.devicePort'],
  ['notify', 'p', 65536, 'message.devicePort'],
  ['notify', 'p', 4000.5, 'message.devicePort'],
  ['notify', 'p', '4000', 'message.devicePort'],
  ['notify', 'from', '', 'message.fromNode'],
  ['notify', 'from', 'node a', 'message.fromNode'],
  ['notify', 'w', 'cd'.repeat(39), 'message.wake'],
  ['notify', 'w', 'zz'.repeat(40), 'message.wake'],
  ['notify', 'w', undefined, 'message.wake'],
  ['notify', 'w', `${'cd'.repeat(16)}ffffffffffffffff${'ef'.repeat(16)}`, 'message.wake.timestamp'],
  ['notify', 'extra', 1, 'message.extra'],
  ['attached', 'by', 'n'.repeat(65), 'message.byNode'],
  ['attached', 'by', undefined, 'message.byNode'],
  ['attached', 'r', '', 'message.requestId'],
  ['refused', 'why', 0, 'message.reason'],
  ['refused', 'why', 5, 'message.reason'],
  ['refused', 'why', '1', 'message.reason'],
  ['refused', 'by', 5, 'message.byNode'],
  ['verdict', 's', 17, 'message.status'],
  ['verdict', 's', -1, 'message.status'],
  ['verdict', 's', 'ok', 'message.status'],
  ['verdict', 'c', 'none', 'message.candidates'],
  ['verdict', 'c', Array.from({ length: 9 }, () => [1, '198.51.100.7', 5000]), 'message.candidates'],
  ['verdict', 'c', [[1, '198.51.100.7']], 'message.candidates[0]'],
  ['verdict', 'c', [[3, '198.51.100.7', 5000]], 'message.candidates[0].kind'],
  ['verdict', 'c', [[2, 'example.com', 5000]], 'message.candidates[0].address'],
  [
    'verdict',
    'c',
    [
      [2, '198.51.100.7', 5000],
      [2, '198.51.100.7', 0],
    ],
    'message.candidates[1].port',
  ],
  ['verdict', 't', 'verdicts', 'message.kind'],
  ['verdict', 't', undefined, 'message.kind'],
  ['pending', 'd', 'TV/1', 'pending.equipmentId'],
  ['pending', 'o', '', 'pending.clientNode'],
  ['pending', 'ca', '198.51.100.256', 'pending.clientAddress'],
  ['pending', 'cp', 0, 'pending.clientPort'],
  ['pending', 'ap', 70000, 'pending.advertisedPort'],
  ['pending', 's', 'not base64!', 'pending.sealedRequest'],
  ['pending', 's', 'A'.repeat(5464), 'pending.sealedRequest'],
  ['pending', 's', 12, 'pending.sealedRequest'],
  ['pending', 'at', -1, 'pending.notifiedAtMs'],
  ['pending', 'at', 2 ** 53, 'pending.notifiedAtMs'],
  ['pending', 'at', undefined, 'pending.notifiedAtMs'],
  ['pending', 'x', 1, 'pending.x'],
  ['offer', 'node', 'a b', 'offer.node'],
  ['offer', 'tls', undefined, 'offer.tlsAddress'],
  ['offer', 'tls', 7443, 'offer.tlsAddress'],
  ['offer', 'tls', 'node-a', 'offer.tlsAddress'],
  ['offer', 'tls', 'node_a:7443', 'offer.tlsAddress.host'],
  ['offer', 'tls', '[node-a]:7443', 'offer.tlsAddress.host'],
  ['offer', 'tls', 'node-a:0', 'offer.tlsAddress.port'],
  ['offer', 'tls', 'node-a:99999', 'offer.tlsAddress.port'],
];

for (const [which, key, value, field] of MALFORMED) {
  test(`${which}: ${key} = ${JSON.stringify(value)?.slice(0, 40)} is rejected naming ${field}`, (t) => {
    const o: Record<string, unknown> = { ...VALID[which] };
    if (value === undefined) delete o[key];
    else o[key] = value;
    const err = throwsProtocolError(t, () => decoders[which](JSON.stringify(o)));
    t.is(err?.field, field);
  });
}

test('text that is not one JSON object, or is too long, is rejected naming the record', (t) => {
  for (const [decode, what] of [
    [decodeNodeMessage, 'message'],
    [decodePendingRecord, 'pending'],
    [decodeRelayOffer, 'offer'],
  ] as const) {
    for (const text of ['', 'not json', '[1,2]', 'null', '"text"', `{"pad":"${'x'.repeat(NODE_MESSAGE_MAX_BYTES)}"}`]) {
      t.is(throwsProtocolError(t, () => decode(text), `${what} ${text.slice(0, 20)}`)?.field, what);
    }
  }
});

testProp('any text decodes or raises ProtocolError, never anything else', [fc.oneof(fc.string(), fc.json())], (t, text) => {
  for (const decode of [decodeNodeMessage, decodePendingRecord, decodeRelayOffer]) {
    try {
      decode(text);
    } catch (err) {
      t.is((err as { code?: string }).code, 'PEERLINK_ERR_PROTOCOL');
    }
  }
  t.pass();
});

test('a taken message may name a device\'s IPv6 mapping ("<id>/6", family-key.ts), nothing else with a slash', (t) => {
  const m = decodeNodeMessage(JSON.stringify({ t: 'taken', d: 'TV-1/6', by: 'node-b', ts: 1 }));
  t.like(m, { kind: 'taken', equipmentId: 'TV-1/6' });
  t.deepEqual(decodeNodeMessage(encodeNodeMessage(m)), m);
  for (const bad of ['TV-1/4', 'TV-1/6/6', '/6', 'TV-1/']) {
    t.throws(() => decodeNodeMessage(JSON.stringify({ t: 'taken', d: bad, by: 'node-b', ts: 1 })), undefined, bad);
  }
  // A notify still names the device itself.
  t.throws(() =>
    decodeNodeMessage(JSON.stringify({ t: 'notify', r: 'ab'.repeat(16), d: 'TV-1/6', a: '1.2.3.4', p: 1, from: 'n', w: '00'.repeat(56) })),
  );
});
