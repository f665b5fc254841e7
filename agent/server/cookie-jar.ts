/**
 * Return routability for UDP (P6): before the server trusts a new mapping (records it, so that
 * notifications go there) or answers a probe, the source must show that it receives what is sent
 * to it, by echoing a cookie the server sent there. Without it a device owner could register with
 * a spoofed source address and have the server notify a victim, and anyone could have the server
 * answer a victim with replayed packets. WireGuard's cookie reply and QUIC's Retry do the same.
 *
 * A cookie is stateless: keyed BLAKE2s-128 over the equipment ID and the observed address and
 * port, under a key for the current time epoch (COOKIE_EPOCH_MS) derived from the registration
 * master key, so every node of a fleet accepts every other node's cookies without sharing state.
 * The current and the previous epoch are valid (a cookie lives 2 to 4 minutes); a device needs
 * one only when its mapping changes, so it asks again then.
 */
import { blake2sKey, blake2sMac, type Blake2sKey } from '../protocol/blake2s.js';
import { COOKIE_BYTES, COOKIE_EPOCH_MS } from '../protocol/constants.js';
import type { Endpoint } from '../protocol/address.js';
import { KEY_BYTES } from '../protocol/keys.js';

const LABEL = Buffer.from('peerlink/v1/cookie-key\0', 'utf8');
/** ID (up to 255 bytes), a NUL, the address as text (up to 45), a NUL, the port (2). */
const INPUT_MAX_BYTES = 255 + 1 + 45 + 1 + 2;

export interface CookieJar {
  /** The cookie for `id` at `from`, now. */
  issue(equipmentId: string, from: Endpoint, nowMs: number): Buffer;
  /** Whether `cookie` was issued for `id` at `from` in this epoch or the one before. */
  valid(cookie: Uint8Array, equipmentId: string, from: Endpoint, nowMs: number): boolean;
}

export function createCookieJar(masterKey: Uint8Array): CookieJar {
  const master = blake2sKey(masterKey, KEY_BYTES);
  const keys = new Map<number, Blake2sKey>();
  const input = Buffer.alloc(INPUT_MAX_BYTES);
  const scratch = Buffer.alloc(COOKIE_BYTES);

  function epochKey(epoch: number): Blake2sKey {
    let k = keys.get(epoch);
    if (k === undefined) {
      const label = Buffer.alloc(LABEL.length + 8);
      LABEL.copy(label);
      label.writeBigUInt64BE(BigInt(Math.max(0, epoch)), LABEL.length);
      k = blake2sKey(blake2sMac(master, label, Buffer.alloc(KEY_BYTES)), COOKIE_BYTES);
      // Two epochs are in use at a time: older keys go (bounded map).
      for (const e of keys.keys()) if (e < epoch - 1) keys.delete(e);
      keys.set(epoch, k);
    }
    return k;
  }

  function compute(epoch: number, id: string, from: Endpoint, out: Buffer): Buffer {
    let n = input.write(id, 0, 'utf8');
    input[n++] = 0;
    n += input.write(from.address, n, 'latin1');
    input[n++] = 0;
    n = input.writeUInt16BE(from.port, n);
    return blake2sMac(epochKey(epoch), input, out, n) as Buffer;
  }

  return {
    issue: (id, from, nowMs) => compute(Math.floor(nowMs / COOKIE_EPOCH_MS), id, from, Buffer.alloc(COOKIE_BYTES)),
    valid(cookie, id, from, nowMs) {
      if (cookie.length !== COOKIE_BYTES || cookie.every((b) => b === 0)) return false;
      const epoch = Math.floor(nowMs / COOKIE_EPOCH_MS);
      for (const e of [epoch, epoch - 1]) {
        compute(e, id, from, scratch);
        // Constant time over the bytes.
        let diff = 0;
        for (let i = 0; i < COOKIE_BYTES; i++) diff |= scratch[i]! ^ cookie[i]!;
        if (diff === 0) return true;
      }
      return false;
    },
  };
}
