/**
 * Keyed BLAKE2s (agent/protocol/blake2s.ts), the UDP packet MAC, against independent references:
 * RFC 7693 Appendix B, the BLAKE2 reference test vectors (blake2s-kat.txt, keyed), vectors computed
 * with CPython's hashlib.blake2s (the reference C code) for other key and output lengths and the
 * block boundaries, and Node's unkeyed `blake2s256` on random inputs of every length to 300 bytes.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { blake2sKey, blake2sMac } from '../../agent/protocol/blake2s.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const KAT_KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const mac = (key: Uint8Array, data: Uint8Array, outBytes: number): string =>
  hex(blake2sMac(blake2sKey(key, outBytes), data, new Uint8Array(outBytes)));

test('RFC 7693 Appendix B: BLAKE2s-256("abc")', (t) => {
  t.is(mac(new Uint8Array(0), Buffer.from('abc'), 32), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
});

test('reference keyed vectors (blake2s-kat.txt): in = 00, and in = 00..fe', (t) => {
  t.is(mac(KAT_KEY, Uint8Array.of(0), 32), '40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1');
  t.is(
    mac(
      KAT_KEY,
      Uint8Array.from({ length: 255 }, (_, i) => i),
      32,
    ),
    '3fb735061abc519dfe979e54c1ee5bfad0a9d858b3315bad34bde999efd724dd',
  );
});

test('other key and output lengths, around the block boundaries (hashlib.blake2s)', (t) => {
  const vectors: [number, number, number, string][] = [
    [32, 1, 32, '722ac21d94c3868234e075bb5692678e6460c23466b10b48acf133e6f89f9082'],
    [32, 3, 16, '3a1c561fc35d607a752c8b807fc5826e'],
    [32, 48, 16, '8cdf89401d7def76619a6962da7f5ed5'],
    [32, 63, 16, '1052ac94e3acb1a81c87d50cb3cebd68'],
    [32, 64, 32, 'ce3c22b930e6395797de1e490600d305294ff2e30eb187bb63120e3f5e3fc129'],
    [32, 65, 16, '0b9ae39a44ce901047c9d568694a26d0'],
    [32, 128, 32, 'b434a9ad31b133b873924a29f24cfd8e00431b1c2aa088176e7ef5b311aed79b'],
    [32, 129, 16, 'cc6a2619c2328be9b586db8900ec43d2'],
    [16, 44, 16, '5320b1de737353fc4e7c38f849d82f7b'],
    [1, 200, 7, '5cf7fc2c7a0867'],
  ];
  for (const [keyBytes, msgBytes, outBytes, want] of vectors) {
    const msg = Uint8Array.from({ length: msgBytes }, (_, i) => (i * 7 + 3) & 255);
    t.is(mac(KAT_KEY.subarray(0, keyBytes), msg, outBytes), want, `key ${keyBytes} B, message ${msgBytes} B, output ${outBytes} B`);
  }
});

test("unkeyed, every length 0-300: equals Node's blake2s256", (t) => {
  for (let n = 0; n <= 300; n++) {
    const data = randomBytes(n);
    t.is(mac(new Uint8Array(0), data, 32), createHash('blake2s256').update(data).digest('hex'), `${n} bytes`);
  }
});

test('a prefix and an offset give the MAC of the prefix, written at the offset; a prepared key is reusable', (t) => {
  const key = blake2sKey(KAT_KEY, 16);
  const data = randomBytes(80);
  const whole = hex(blake2sMac(key, data.subarray(0, 50), new Uint8Array(16)));
  const out = new Uint8Array(20);
  blake2sMac(key, data, out, 50, 4);
  t.is(hex(out.subarray(4)), whole);
  t.is(hex(blake2sMac(key, data.subarray(0, 50), new Uint8Array(16))), whole, 'same key, same answer');
});

test('bad arguments are refused', (t) => {
  t.throws(() => blake2sKey(new Uint8Array(33), 16), { instanceOf: RangeError });
  t.throws(() => blake2sKey(KAT_KEY, 0), { instanceOf: RangeError });
  t.throws(() => blake2sKey(KAT_KEY, 33), { instanceOf: RangeError });
  const key = blake2sKey(KAT_KEY, 16);
  t.throws(() => blake2sMac(key, new Uint8Array(0), new Uint8Array(16)), { instanceOf: RangeError }, 'keyed, empty');
  t.throws(() => blake2sMac(key, new Uint8Array(8), new Uint8Array(15)), { instanceOf: RangeError }, 'output too small');
  t.throws(() => blake2sMac(key, new Uint8Array(8), new Uint8Array(16), 9), { instanceOf: RangeError }, 'length past the data');
});
