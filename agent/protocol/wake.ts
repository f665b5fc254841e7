/**
 * The wake proof (P9): what lets a device tell, before it does any TLS work, that a notification
 * comes from a request made with its password. The client makes it with a key derived from the
 * access key; the server cannot check it (it holds no such key, P2) and passes it on in the
 * CONNECT_REQUEST and then in every NOTIFY; the device checks it with one HMAC and opens its TLS
 * connection to the server only if it verifies, is fresh and is new. Otherwise it tells the server
 * (REFUSE), which ends the request at once and charges the refusal to the requesting source.
 *
 *   wakeKey = HKDF-SHA256(accessKey, salt = "", info = "peerlink/v1/wake-key")
 *   wake    = clientNonce (16) | timestamp ms (u64, server time) | tag (16)
 *   tag     = HMAC-SHA256(wakeKey, "peerlink/v1/wake\0" || id || "\0" || clientNonce || timestamp)[0..16]
 *
 * The nonce is the sealed request's clientNonce: the device later checks that the request it is
 * handed is the one the wake named.
 */
import { hkdfSync } from 'node:crypto';
import { ByteReader, ByteWriter } from './bytes.js';
import { KEY_BYTES, MAC_BYTES, NONCE_BYTES, equalBytes, mac } from './keys.js';

export const WAKE_BYTES = NONCE_BYTES + 8 + MAC_BYTES;

export interface Wake {
  readonly nonce: Buffer;
  readonly timestampMs: number;
  readonly tag: Buffer;
}

export function deriveWakeKey(accessKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', accessKey, Buffer.alloc(0), Buffer.from('peerlink/v1/wake-key', 'utf8'), KEY_BYTES));
}

function tagOf(wakeKey: Uint8Array, equipmentId: string, nonce: Uint8Array, timestampMs: number): Buffer {
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(timestampMs));
  return mac(wakeKey, [Buffer.from(`peerlink/v1/wake\0${equipmentId}\0`, 'utf8'), nonce, ts], MAC_BYTES);
}

export function makeWake(wakeKey: Uint8Array, equipmentId: string, nonce: Buffer, timestampMs: number): Wake {
  return { nonce, timestampMs, tag: tagOf(wakeKey, equipmentId, nonce, timestampMs) };
}

export function verifyWake(wakeKey: Uint8Array, equipmentId: string, wake: Wake): boolean {
  return equalBytes(tagOf(wakeKey, equipmentId, wake.nonce, wake.timestampMs), wake.tag);
}

export function writeWake(w: ByteWriter, wake: Wake): ByteWriter {
  if (wake.nonce.length !== NONCE_BYTES || wake.tag.length !== MAC_BYTES) throw new RangeError('wake: nonce or tag of the wrong length');
  return w.bytes(wake.nonce).timeMs(wake.timestampMs).bytes(wake.tag);
}

/** Copies (a wake outlives the datagram or frame it came in). Throws ProtocolError naming the field. */
export function readWake(r: ByteReader, field: string): Wake {
  const nonce = r.bytes(NONCE_BYTES, `${field}.nonce`);
  const timestampMs = r.timeMs(`${field}.timestamp`);
  const tag = r.bytes(MAC_BYTES, `${field}.tag`);
  return { nonce, timestampMs, tag };
}

/** For messages between server nodes: the wake's bytes as hex. */
export function wakeToHex(wake: Wake): string {
  return writeWake(new ByteWriter(), wake).toBuffer().toString('hex');
}

/** Throws ProtocolError when `hex` is not a wake. */
export function wakeFromHex(hex: string): Wake {
  const buf = Buffer.from(hex, 'hex');
  const r = new ByteReader(buf, 'wake');
  const w = readWake(r, 'wake');
  r.end();
  return w;
}
