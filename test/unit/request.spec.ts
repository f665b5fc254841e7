import test from 'ava';
import { fc, testProp } from '@fast-check/ava';
import { createHmac } from 'node:crypto';
import { PROTOCOL_VERSION } from '../../agent/protocol/constants.js';
import { deriveRequestTagKey } from '../../agent/protocol/keys.js';
import { parseRequest, sealRequest, verifyRequestTag, type ConnectRequest } from '../../agent/protocol/request.js';
import {
  bytesArb,
  equipmentIdArb,
  keyArb,
  nonZeroPortArb,
  parsesOrProtocolError,
  serviceNameArb,
  throwsProtocolError,
  timestampArb,
} from '../helpers/protocol-arbitraries.js';

const requestArb: fc.Arbitrary<ConnectRequest> = fc.record({
  clientNonce: bytesArb(16),
  timestampMs: timestampArb,
  equipmentId: equipmentIdArb,
  service: serviceNameArb,
  advertisedPort: nonZeroPortArb,
});

const ACCESS_KEY = Buffer.alloc(32, 0x42);
const TAG_KEY = deriveRequestTagKey(ACCESS_KEY);
const SAMPLE: ConnectRequest = {
  clientNonce: Buffer.alloc(16, 9),
  timestampMs: 1_700_000_000_000,
  equipmentId: 'dev-01',
  service: 'http',
  advertisedPort: 40000,
};

testProp('seal/parse round-trips and the tag verifies with the key that sealed it', [requestArb, keyArb], (t, req, key) => {
  const sealed = sealRequest(req, key);
  const parsed = parseRequest(sealed);
  t.deepEqual(parsed.request, req);
  t.true(verifyRequestTag(parsed, key));
  // Layout: version | nonce | ts | id | service | port | tag(32) = HMAC-SHA256(key, body).
  const body = sealed.subarray(0, sealed.length - 32);
  t.is(body.length, 1 + 16 + 8 + 1 + req.equipmentId.length + 1 + req.service.length + 2);
  t.is(body[0], PROTOCOL_VERSION);
  t.deepEqual(sealed.subarray(sealed.length - 32), createHmac('sha256', key).update(body).digest());
  t.deepEqual(parsed.signed, body);
});

testProp('the tag verifies only with the right request tag key', [requestArb, keyArb, keyArb], (t, req, accessKey, otherKey) => {
  fc.pre(!accessKey.equals(otherKey));
  const tagKey = deriveRequestTagKey(accessKey);
  const parsed = parseRequest(sealRequest(req, tagKey));
  t.true(verifyRequestTag(parsed, tagKey));
  t.false(verifyRequestTag(parsed, otherKey), 'another key');
  t.false(verifyRequestTag(parsed, deriveRequestTagKey(otherKey)), 'another access key');
  t.false(verifyRequestTag(parsed, accessKey), 'the access key itself is not the tag key');
});

testProp(
  'changing any byte breaks parsing (ProtocolError) or verification',
  [requestArb, fc.integer({ min: 1, max: 255 })],
  (t, req, mask) => {
    const sealed = sealRequest(req, TAG_KEY);
    let accepted = 0;
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i] = bad[i]! ^ mask;
      const parsed = parsesOrProtocolError(t, () => parseRequest(bad), `byte ${i}`);
      if (parsed && verifyRequestTag(parsed, TAG_KEY)) accepted++;
    }
    t.is(accepted, 0);
  },
);

testProp(
  'every truncation is a ProtocolError (and nothing else)',
  [requestArb],
  (t, req) => {
    const sealed = sealRequest(req, TAG_KEY);
    for (let n = 0; n < sealed.length; n++)
      throwsProtocolError(t, () => parseRequest(sealed.subarray(0, n)), `prefix ${n}/${sealed.length}`);
  },
  { numRuns: 50 },
);

testProp(
  'random bytes: parseRequest returns or throws a ProtocolError, never anything else',
  [fc.uint8Array({ maxLength: 200 })],
  (t, bytes) => {
    parsesOrProtocolError(t, () => parseRequest(bytes));
    t.pass();
  },
);

test('trailing bytes, a bad version, port 0 and a bad service name are ProtocolErrors naming the field', (t) => {
  const sealed = sealRequest(SAMPLE, TAG_KEY);
  const body = sealed.subarray(0, sealed.length - 32);
  const reseal = (b: Buffer): Buffer => Buffer.concat([b, createHmac('sha256', TAG_KEY).update(b).digest()]);

  // After the port comes the optional LAN part (count 0-2, then endpoints; 0 only before hints),
  // then the optional path hints (one byte, never 0), then nothing.
  t.is(throwsProtocolError(t, () => parseRequest(reseal(Buffer.concat([body, Buffer.of(0)]))))?.field, 'request.lan.count');
  t.is(
    throwsProtocolError(t, () => parseRequest(reseal(Buffer.concat([body, Buffer.of(1, 4, 192, 168, 1, 11, 0x13, 0x88, 0)]))))?.field,
    'request.hints',
  );
  t.is(throwsProtocolError(t, () => parseRequest(reseal(Buffer.concat([body, Buffer.of(0, 1, 7)]))))?.field, 'request');

  const v = Buffer.from(body);
  v[0] = PROTOCOL_VERSION + 1;
  t.is(throwsProtocolError(t, () => parseRequest(reseal(v)))?.field, 'request.version');

  const p = Buffer.from(body);
  p.writeUInt16BE(0, p.length - 2);
  t.is(throwsProtocolError(t, () => parseRequest(reseal(p)))?.field, 'request.advertisedPort');

  t.is(throwsProtocolError(t, () => parseRequest(sealRequest({ ...SAMPLE, service: 'HTTP' }, TAG_KEY)))?.field, 'request.service');
  t.is(
    throwsProtocolError(t, () => parseRequest(sealRequest({ ...SAMPLE, service: 'a'.repeat(33) }, TAG_KEY)))?.field,
    'request.service.length',
  );
  t.is(throwsProtocolError(t, () => parseRequest(sealRequest({ ...SAMPLE, equipmentId: 'a b' }, TAG_KEY)))?.field, 'request.equipmentId');
  t.is(
    throwsProtocolError(t, () => parseRequest(sealRequest({ ...SAMPLE, equipmentId: 'a'.repeat(65) }, TAG_KEY)))?.field,
    'request.equipmentId.length',
  );
});

test('a tag of the wrong length does not verify (and does not throw)', (t) => {
  const parsed = parseRequest(sealRequest(SAMPLE, TAG_KEY));
  t.false(verifyRequestTag({ ...parsed, tag: parsed.tag.subarray(0, 16) }, TAG_KEY));
});

test('path hints: sealed after the LAN part, absent when 0 (the layout without them is unchanged)', (t) => {
  t.deepEqual(sealRequest({ ...SAMPLE, hints: 0 }, TAG_KEY), sealRequest(SAMPLE, TAG_KEY));
  const alone = sealRequest({ ...SAMPLE, hints: 1 }, TAG_KEY);
  t.is(alone.length, sealRequest(SAMPLE, TAG_KEY).length + 2, 'a LAN count of 0 and the hint byte');
  t.deepEqual(parseRequest(alone).request, { ...SAMPLE, hints: 1 });
  const lan = [{ address: '192.168.1.11', port: 5000 }];
  const both = parseRequest(sealRequest({ ...SAMPLE, lan, hints: 3 }, TAG_KEY));
  t.deepEqual(both.request, { ...SAMPLE, lan, hints: 3 });
  t.true(verifyRequestTag(both, TAG_KEY));
  // Under the tag: a server that sets a hint bit breaks the request.
  const forged = Buffer.from(alone);
  forged[forged.length - 33] = 3;
  t.false(verifyRequestTag(parseRequest(forged), TAG_KEY));
  t.throws(() => sealRequest({ ...SAMPLE, hints: 256 }, TAG_KEY), { instanceOf: RangeError });
});
