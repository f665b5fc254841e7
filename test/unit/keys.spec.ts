/**
 * Known-answer tests: every expected value is computed here with node:crypto primitives from the
 * construction documented in the header of agent/protocol/keys.ts, never with the code under test.
 */
import test from 'ava';
import { fc, testProp } from '@fast-check/ava';
import { createHmac, hkdfSync, scryptSync } from 'node:crypto';
import { PeerlinkError } from '../../agent/common/errors.js';
import {
  ACCESS_KEY_SCRYPT,
  attachProof,
  deriveAccessKey,
  deriveRegistrationKey,
  registrationKeyDeriver,
  deriveRequestTagKey,
  deriveTunnelPsk,
  equalBytes,
  KEY_BYTES,
  mac,
  normalizePassword,
} from '../../agent/protocol/keys.js';
import { blake2sKey, blake2sMac } from '../../agent/protocol/blake2s.js';
import { equipmentIdArb, keyArb, serviceNameArb } from '../helpers/protocol-arbitraries.js';

const MASTER = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const ID = 'unit-0042';
const ACCESS = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf', 'hex');
const CLIENT_NONCE = Buffer.alloc(16, 0x11);
const DEVICE_NONCE = Buffer.alloc(16, 0x22);

/** The same values computed outside Node (Python hashlib/hmac, RFC 5869 HKDF by hand) for these inputs. */
const KAT = {
  // Computed with CPython: hashlib.blake2s(label + id, key=MASTER, digest_size=32).
  registration: '903ba4c0eb832f3f07a64ee8b0ac0996d02f04d07acce76301bd4659492c85a1',
  access: 'a5f6793d956c10643b97fd7eb42e06f9294e969f8af809880ecb38e406560b3d', // password '7KQ2-M9XD-4HPR'
  requestTag: 'b2f518db2d2c5735dc1f199316d60b790e807fa2934440c38d4c2c1ab01dbd7b',
  tunnelPsk: '8c16e079e5cf96918002cefdb4ba9f82cb94a4b0502fc5626491b5d3a3b895ed', // service 'ssh'
  attach: '1c4dc798201eceeeee9f10c7760f09cc56c19cd166d373cb91c060abf744a908', // requestId 0x33*16, exporter 0x44*32
};

const hmac = (key: Uint8Array, ...parts: Array<string | Uint8Array>): Buffer => {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(typeof p === 'string' ? Buffer.from(p, 'utf8') : p);
  return h.digest();
};
const scryptAccess = (normalized: string, id: string): Buffer =>
  scryptSync(Buffer.from(normalized, 'utf8'), Buffer.from(`peerlink/v1/access-key\0${id}`, 'utf8'), 32, {
    N: 1024,
    r: 8,
    p: 1,
    maxmem: 64 * 1024 * 1024,
  });

// --- known answers ---

test('deriveRegistrationKey = BLAKE2s-256(key = master, "peerlink/v1/registration-key\\0" || id)', (t) => {
  const expected = Buffer.from(blake2sMac(blake2sKey(MASTER, 32), Buffer.from(`peerlink/v1/registration-key\0${ID}`), new Uint8Array(32)));
  t.deepEqual(deriveRegistrationKey(MASTER, ID), expected);
  t.is(deriveRegistrationKey(MASTER, ID).toString('hex'), KAT.registration);
  const derive = registrationKeyDeriver(MASTER);
  t.deepEqual(derive(ID), expected, 'the server-side deriver gives the same key');
  t.deepEqual(derive('unit-0043'), deriveRegistrationKey(MASTER, 'unit-0043'), 'and again for another ID (its scratch input is reused)');
  t.deepEqual(derive(ID), expected);
  t.notDeepEqual(derive('unit-0043'), expected);
});

test('deriveRegistrationKey refuses a master key that is not 32 bytes', (t) => {
  t.throws(() => deriveRegistrationKey(Buffer.alloc(31), ID), { instanceOf: RangeError });
  t.throws(() => deriveRegistrationKey(Buffer.alloc(33), ID), { instanceOf: RangeError });
  t.notThrows(() => deriveRegistrationKey(Buffer.alloc(32), ID));
});

test('scrypt parameters are the documented ones (N=2^10, r=8, p=1)', (t) => {
  t.like(ACCESS_KEY_SCRYPT, { N: 2 ** 10, r: 8, p: 1 });
  t.true(Object.isFrozen(ACCESS_KEY_SCRYPT));
});

test('deriveAccessKey = scrypt(normalised password, "peerlink/v1/access-key\\0" || id)', async (t) => {
  const key = await deriveAccessKey('7KQ2-M9XD-4HPR', ID);
  t.deepEqual(key, scryptAccess('7KQ2M9XD4HPR', ID));
  t.is(key.toString('hex'), KAT.access);
  t.is(key.length, KEY_BYTES);
});

test('deriveAccessKey: password normalisation (NFKC, no spaces or dashes, upper case)', async (t) => {
  const canonical = scryptAccess('ABCDEFGH', ID);
  for (const typed of [
    'abcd-efgh',
    'ABCDEFGH',
    'abcd efgh',
    ' Ab-Cd\tEf--gH ',
    '\uFF41\uFF42\uFF43\uFF44-\uFF45\uFF46\uFF47\uFF48' /* full-width */,
  ]) {
    t.deepEqual(await deriveAccessKey(typed, ID), canonical, JSON.stringify(typed));
  }
  t.is(normalizePassword('abcd-efgh'), 'ABCDEFGH');
  t.is(normalizePassword('\uFF21\uFF22 \u2460'), 'AB1'); // full-width letters, circled digit one
  t.notDeepEqual(await deriveAccessKey('abcd-efgi', ID), canonical);
});

test('deriveRequestTagKey = HKDF-SHA256(accessKey, salt="", info="peerlink/v1/request-tag", 32)', (t) => {
  const expected = Buffer.from(hkdfSync('sha256', ACCESS, Buffer.alloc(0), Buffer.from('peerlink/v1/request-tag'), 32));
  t.deepEqual(deriveRequestTagKey(ACCESS), expected);
  t.is(expected.toString('hex'), KAT.requestTag);
});

test('deriveTunnelPsk = HKDF-SHA256(accessKey, clientNonce||deviceNonce, "peerlink/v1/tunnel-psk\\0" || id || "\\0" || service)', (t) => {
  const expected = Buffer.from(
    hkdfSync('sha256', ACCESS, Buffer.concat([CLIENT_NONCE, DEVICE_NONCE]), Buffer.from(`peerlink/v1/tunnel-psk\0${ID}\0ssh`), 32),
  );
  t.deepEqual(deriveTunnelPsk(ACCESS, CLIENT_NONCE, DEVICE_NONCE, ID, 'ssh'), expected);
  t.is(expected.toString('hex'), KAT.tunnelPsk);
});

test('attachProof = HMAC-SHA256(registrationKey, "peerlink/v1/attach\\0" || requestId || exporter), 32 bytes', (t) => {
  const regKey = deriveRegistrationKey(MASTER, ID);
  const requestId = Buffer.alloc(16, 0x33);
  const exporter = Buffer.alloc(32, 0x44);
  const expected = hmac(regKey, 'peerlink/v1/attach\0', requestId, exporter);
  t.deepEqual(attachProof(regKey, requestId, exporter), expected);
  t.is(expected.toString('hex'), KAT.attach);
  t.notDeepEqual(attachProof(regKey, requestId, Buffer.alloc(32, 0x45)), expected, 'bound to the TLS exporter');
  t.notDeepEqual(attachProof(regKey, Buffer.alloc(16, 0x34), exporter), expected, 'bound to the request id');
});

test('mac = HMAC-SHA256 truncated (16 bytes by default)', (t) => {
  const full = hmac(ACCESS, 'a', 'bc');
  t.deepEqual(mac(ACCESS, [Buffer.from('a'), Buffer.from('bc')]), full.subarray(0, 16));
  t.deepEqual(mac(ACCESS, [Buffer.from('abc')], 32), full);
});

// --- domain separation ---

testProp(
  'registration keys differ for different equipment ids and different master keys',
  [equipmentIdArb, equipmentIdArb, keyArb, keyArb],
  (t, a, b, m1, m2) => {
    fc.pre(a !== b && !m1.equals(m2));
    t.false(deriveRegistrationKey(m1, a).equals(deriveRegistrationKey(m1, b)));
    t.false(deriveRegistrationKey(m1, a).equals(deriveRegistrationKey(m2, a)));
  },
);

test('access keys differ per equipment id and per password', async (t) => {
  const a = await deriveAccessKey('ABCD-EFGH', 'dev-a');
  t.false(a.equals(await deriveAccessKey('ABCD-EFGH', 'dev-b')));
  t.false(a.equals(await deriveAccessKey('ABCD-EFGI', 'dev-a')));
});

testProp(
  'tunnel PSKs differ when any of nonce, id or service differs; request tag key is not a tunnel PSK',
  [
    keyArb,
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    equipmentIdArb,
    serviceNameArb,
    equipmentIdArb,
    serviceNameArb,
  ],
  (t, access, cn, dn, id, service, id2, service2) => {
    fc.pre(!Buffer.from(cn).equals(Buffer.from(dn)) && id !== id2 && service !== service2);
    const psk = deriveTunnelPsk(access, cn, dn, id, service);
    t.false(psk.equals(deriveTunnelPsk(access, dn, cn, id, service)), 'nonces swapped');
    t.false(psk.equals(deriveTunnelPsk(access, cn, cn, id, service)), 'device nonce changed');
    t.false(psk.equals(deriveTunnelPsk(access, cn, dn, id2, service)), 'id changed');
    t.false(psk.equals(deriveTunnelPsk(access, cn, dn, id, service2)), 'service changed');
    t.false(psk.equals(deriveRequestTagKey(access)));
    t.false(psk.equals(access));
  },
);

test('the registration key is independent of the access-derived keys', async (t) => {
  const password = 'ABCD-EFGH-JKMN-PQRS';
  const reg = deriveRegistrationKey(MASTER, ID);
  const access = await deriveAccessKey(password, ID);
  const derived = [access, deriveRequestTagKey(access), deriveTunnelPsk(access, CLIENT_NONCE, DEVICE_NONCE, ID, 'http')];
  for (const k of derived) t.false(reg.equals(k));
  // Even with the access key used as the master key, the labels keep them apart.
  t.false(deriveRegistrationKey(access, ID).equals(deriveRequestTagKey(access)));
  t.is(new Set(derived.map((k) => k.toString('hex'))).size, derived.length);
});

// --- abort, equalBytes ---

test('deriveAccessKey rejects with PEERLINK_ERR_ABORTED for an already-aborted signal', async (t) => {
  const ac = new AbortController();
  const reason = new Error('stop');
  ac.abort(reason);
  const err = await t.throwsAsync(deriveAccessKey('ABCD', ID, ac.signal));
  t.true(err instanceof PeerlinkError);
  t.is((err as PeerlinkError).code, 'PEERLINK_ERR_ABORTED');
  t.is((err as PeerlinkError).cause, reason);
  // Refused up front, without paying for scrypt: settled before the next macrotask.
  let settled = false;
  deriveAccessKey('ABCD', ID, ac.signal).catch(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  t.true(settled);
});

test('deriveAccessKey rejects with PEERLINK_ERR_ABORTED when aborted while scrypt runs', async (t) => {
  const ac = new AbortController();
  const p = deriveAccessKey('ABCD', ID, ac.signal);
  ac.abort();
  const err = await t.throwsAsync(p);
  t.is((err as PeerlinkError).code, 'PEERLINK_ERR_ABORTED');
});

test('equalBytes: true for equal, false for different bytes and on a length mismatch (no throw)', (t) => {
  t.true(equalBytes(Buffer.from('abc'), Buffer.from('abc')));
  t.true(equalBytes(new Uint8Array(0), new Uint8Array(0)));
  t.false(equalBytes(Buffer.from('abc'), Buffer.from('abd')));
  t.false(equalBytes(Buffer.from('abc'), Buffer.from('abcd')));
  t.false(equalBytes(Buffer.alloc(16), Buffer.alloc(32)));
  t.false(equalBytes(Buffer.alloc(0), Buffer.alloc(1)));
});
