/**
 * Keyed BLAKE2s (RFC 7693), the MAC of the UDP packets between devices and the server
 * (udp-packets.ts), with the key block compressed once per key.
 *
 * Why BLAKE2s, and why here rather than Node's crypto: the server answers every device's keepalive
 * registration, so its per-packet cost bounds the fleet a core can carry. `createHmac` costs ~3.8 us
 * a call on Node 20 / OpenSSL 3 (mostly per-call set-up) and a registration needs two MACs (check
 * the tag, tag the ack): more than Node's whole cost of receiving and answering a datagram (~12 us).
 * Node offers BLAKE2s only unkeyed. Keyed BLAKE2s is a MAC by design (no HMAC construction needed;
 * WireGuard's packet MACs are the same), and with the key block precomputed a packet of up to 64
 * bytes costs one compression (~0.2 us in V8). `npm run bench -- server --only udp` measures it;
 * test/unit/blake2s.spec.ts checks it against RFC 7693, the reference test vectors and Node's
 * `blake2s256`.
 *
 * Constant time in key and message: additions, rotations and XORs of 32-bit words; the only table
 * (the message schedule SIGMA) is indexed by the round number, never by data.
 */

const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

// prettier-ignore
const SIGMA = new Uint8Array([
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
  11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
  7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
  9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
  2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
  12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
  13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
  6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
  10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0,
]);

const BLOCK_BYTES = 64;
export const BLAKE2S_MAX_KEY_BYTES = 32;
export const BLAKE2S_MAX_OUT_BYTES = 32;
/** Words of a prepared key: the chaining state (8), the output length, the bytes already absorbed. */
export const BLAKE2S_KEY_WORDS = 10;

// Scratch space owned by this module: each call runs to completion before the next (one thread).
const m = new Int32Array(16);
const h = new Int32Array(8);
const block = new Uint8Array(BLOCK_BYTES);

/**
 * A key with its block already compressed: what every MAC under it starts from. Words 0-7: the
 * chaining state; word 8: the output length in bytes; word 9: bytes absorbed (64 keyed, 0 unkeyed).
 */
export type Blake2sKey = Int32Array & { readonly __blake2sKey: true };

/** Compress `block` into `h`; `t` counts the bytes absorbed so far (< 2^32 here), `last` ends the hash. */
function compress(t: number, last: boolean): void {
  for (let i = 0; i < 16; i++) {
    const j = i * 4;
    m[i] = block[j]! | (block[j + 1]! << 8) | (block[j + 2]! << 16) | (block[j + 3]! << 24);
  }
  let v0 = h[0]!, v1 = h[1]!, v2 = h[2]!, v3 = h[3]!, v4 = h[4]!, v5 = h[5]!, v6 = h[6]!, v7 = h[7]!;
  let v8 = IV[0]!, v9 = IV[1]!, v10 = IV[2]!, v11 = IV[3]!;
  let v12 = IV[4]! ^ t, v13 = IV[5]!, v14 = last ? ~IV[6]! : IV[6]!, v15 = IV[7]!;
  for (let r = 0; r < 160; r += 16) {
    // G on the columns, then on the diagonals (RFC 7693 section 3.1), written out: V8 keeps the
    // sixteen words in registers this way.
    v0 = (v0 + v4 + m[SIGMA[r]!]!) | 0; v12 ^= v0; v12 = (v12 >>> 16) | (v12 << 16); v8 = (v8 + v12) | 0; v4 ^= v8; v4 = (v4 >>> 12) | (v4 << 20);
    v0 = (v0 + v4 + m[SIGMA[r + 1]!]!) | 0; v12 ^= v0; v12 = (v12 >>> 8) | (v12 << 24); v8 = (v8 + v12) | 0; v4 ^= v8; v4 = (v4 >>> 7) | (v4 << 25);
    v1 = (v1 + v5 + m[SIGMA[r + 2]!]!) | 0; v13 ^= v1; v13 = (v13 >>> 16) | (v13 << 16); v9 = (v9 + v13) | 0; v5 ^= v9; v5 = (v5 >>> 12) | (v5 << 20);
    v1 = (v1 + v5 + m[SIGMA[r + 3]!]!) | 0; v13 ^= v1; v13 = (v13 >>> 8) | (v13 << 24); v9 = (v9 + v13) | 0; v5 ^= v9; v5 = (v5 >>> 7) | (v5 << 25);
    v2 = (v2 + v6 + m[SIGMA[r + 4]!]!) | 0; v14 ^= v2; v14 = (v14 >>> 16) | (v14 << 16); v10 = (v10 + v14) | 0; v6 ^= v10; v6 = (v6 >>> 12) | (v6 << 20);
    v2 = (v2 + v6 + m[SIGMA[r + 5]!]!) | 0; v14 ^= v2; v14 = (v14 >>> 8) | (v14 << 24); v10 = (v10 + v14) | 0; v6 ^= v10; v6 = (v6 >>> 7) | (v6 << 25);
    v3 = (v3 + v7 + m[SIGMA[r + 6]!]!) | 0; v15 ^= v3; v15 = (v15 >>> 16) | (v15 << 16); v11 = (v11 + v15) | 0; v7 ^= v11; v7 = (v7 >>> 12) | (v7 << 20);
    v3 = (v3 + v7 + m[SIGMA[r + 7]!]!) | 0; v15 ^= v3; v15 = (v15 >>> 8) | (v15 << 24); v11 = (v11 + v15) | 0; v7 ^= v11; v7 = (v7 >>> 7) | (v7 << 25);
    v0 = (v0 + v5 + m[SIGMA[r + 8]!]!) | 0; v15 ^= v0; v15 = (v15 >>> 16) | (v15 << 16); v10 = (v10 + v15) | 0; v5 ^= v10; v5 = (v5 >>> 12) | (v5 << 20);
    v0 = (v0 + v5 + m[SIGMA[r + 9]!]!) | 0; v15 ^= v0; v15 = (v15 >>> 8) | (v15 << 24); v10 = (v10 + v15) | 0; v5 ^= v10; v5 = (v5 >>> 7) | (v5 << 25);
    v1 = (v1 + v6 + m[SIGMA[r + 10]!]!) | 0; v12 ^= v1; v12 = (v12 >>> 16) | (v12 << 16); v11 = (v11 + v12) | 0; v6 ^= v11; v6 = (v6 >>> 12) | (v6 << 20);
    v1 = (v1 + v6 + m[SIGMA[r + 11]!]!) | 0; v12 ^= v1; v12 = (v12 >>> 8) | (v12 << 24); v11 = (v11 + v12) | 0; v6 ^= v11; v6 = (v6 >>> 7) | (v6 << 25);
    v2 = (v2 + v7 + m[SIGMA[r + 12]!]!) | 0; v13 ^= v2; v13 = (v13 >>> 16) | (v13 << 16); v8 = (v8 + v13) | 0; v7 ^= v8; v7 = (v7 >>> 12) | (v7 << 20);
    v2 = (v2 + v7 + m[SIGMA[r + 13]!]!) | 0; v13 ^= v2; v13 = (v13 >>> 8) | (v13 << 24); v8 = (v8 + v13) | 0; v7 ^= v8; v7 = (v7 >>> 7) | (v7 << 25);
    v3 = (v3 + v4 + m[SIGMA[r + 14]!]!) | 0; v14 ^= v3; v14 = (v14 >>> 16) | (v14 << 16); v9 = (v9 + v14) | 0; v4 ^= v9; v4 = (v4 >>> 12) | (v4 << 20);
    v3 = (v3 + v4 + m[SIGMA[r + 15]!]!) | 0; v14 ^= v3; v14 = (v14 >>> 8) | (v14 << 24); v9 = (v9 + v14) | 0; v4 ^= v9; v4 = (v4 >>> 7) | (v4 << 25);
  }
  h[0] = h[0]! ^ v0 ^ v8;
  h[1] = h[1]! ^ v1 ^ v9;
  h[2] = h[2]! ^ v2 ^ v10;
  h[3] = h[3]! ^ v3 ^ v11;
  h[4] = h[4]! ^ v4 ^ v12;
  h[5] = h[5]! ^ v5 ^ v13;
  h[6] = h[6]! ^ v6 ^ v14;
  h[7] = h[7]! ^ v7 ^ v15;
}

/** Prepare a key (0-32 bytes; 0 = plain unkeyed BLAKE2s) for MACs of `outBytes` (1-32) bytes. */
export function blake2sKey(key: Uint8Array, outBytes: number): Blake2sKey {
  if (key.length > BLAKE2S_MAX_KEY_BYTES) throw new RangeError(`BLAKE2s key must be at most ${BLAKE2S_MAX_KEY_BYTES} bytes`);
  if (!Number.isInteger(outBytes) || outBytes < 1 || outBytes > BLAKE2S_MAX_OUT_BYTES) throw new RangeError('BLAKE2s output must be 1-32 bytes');
  h.set(IV);
  // Parameter block word 0: digest length, key length, fanout 1, depth 1 (sequential mode).
  h[0] = h[0]! ^ (0x01010000 | (key.length << 8) | outBytes);
  const prepared = new Int32Array(BLAKE2S_KEY_WORDS) as Blake2sKey;
  if (key.length > 0) {
    block.fill(0);
    block.set(key);
    compress(BLOCK_BYTES, false);
    block.fill(0);
    prepared[9] = BLOCK_BYTES;
  }
  prepared.set(h.subarray(0, 8));
  prepared[8] = outBytes;
  h.fill(0);
  return prepared;
}

/**
 * The MAC (or hash, unkeyed) of the first `length` bytes of `data` under a prepared key, written
 * to `out` at `outOffset`. Offsets instead of views keep the UDP hot path free of allocations.
 * A keyed MAC of an empty message is refused: the key block would have to be the last, and it was
 * compressed as not last (no packet here is empty).
 */
export function blake2sMac(key: Blake2sKey, data: Uint8Array, out: Uint8Array, length: number = data.length, outOffset = 0): Uint8Array {
  let t = key[9]!;
  const outBytes = key[8]!;
  if (!(length >= 0 && length <= data.length)) throw new RangeError('length outside the data');
  if (length === 0 && t > 0) throw new RangeError('keyed BLAKE2s of an empty message is not supported');
  if (length > 0xffff_0000) throw new RangeError('message too long');
  if (!(outOffset >= 0 && out.length - outOffset >= outBytes)) throw new RangeError(`output needs ${outBytes} bytes at offset ${outOffset}`);
  for (let i = 0; i < 8; i++) h[i] = key[i]!;
  let off = 0;
  // Every block but the last; the last (possibly full) block is compressed with the final flag.
  for (; length - off > BLOCK_BYTES; off += BLOCK_BYTES) {
    for (let i = 0; i < BLOCK_BYTES; i++) block[i] = data[off + i]!;
    t += BLOCK_BYTES;
    compress(t, false);
  }
  const rest = length - off;
  for (let i = 0; i < rest; i++) block[i] = data[off + i]!;
  block.fill(0, rest);
  compress(t + rest, true);
  for (let i = 0; i < outBytes; i++) out[outOffset + i] = h[i >> 2]! >>> ((i & 3) * 8);
  h.fill(0);
  block.fill(0);
  return out;
}
