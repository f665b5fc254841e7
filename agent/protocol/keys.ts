/**
 * Key derivations. Each key has one purpose, fixed by its label (domain separation).
 *
 *  registrationKey = BLAKE2s-256(key = registrationMasterKey, "peerlink/v1/registration-key\0" || id)
 *      Proves "I am device <id>" to the rendezvous server (UDP registrations, TLS attach).
 *      The server derives it from its master key for every registration (no per-device store:
 *      keyed BLAKE2s with the master key's block precomputed costs one compression, ~0.3 us;
 *      an HMAC through createHmac cost ~3.8 us). It is independent of the access secret.
 *  accessKey       = scrypt(NFKC(password), "peerlink/v1/access-key\0" || id, N=2^10, r=8, p=1)
 *      What a client proves knowledge of to the device. The device stores only this key,
 *      never the password; the server never sees either.
 *  requestTagKey   = HKDF-SHA256(accessKey, salt="", info="peerlink/v1/request-tag")
 *      Authenticates a client's connect request end to end (client -> device).
 *  tunnelPsk       = HKDF-SHA256(accessKey, salt=clientNonce||deviceNonce,
 *                                info="peerlink/v1/tunnel-psk\0" || id || "\0" || service)
 *      The TLS 1.3 external PSK of the direct channel: fresh per session, bound to the device,
 *      the service and both nonces.
 */
import { createHmac, hkdfSync, scrypt, timingSafeEqual } from 'node:crypto';
import { abortError } from '../common/errors.js';
import { blake2sKey, blake2sMac } from './blake2s.js';

export const KEY_BYTES = 32;
export const MAC_BYTES = 16;
export const NONCE_BYTES = 16;

/**
 * scrypt cost: ~4 ms and 1 MiB per guess, paid once per client run and once per device at the
 * factory, never by the device. Passwords are machine-generated with 98 bits of entropy
 * (pki/password.ts), so offline guessing is infeasible whatever the KDF cost (2^97 guesses on
 * average); the cost was lowered from N=2^14 (~70 ms here) so a factory can provision 10,000
 * devices in well under a minute (docs/factory.md). Kept memory-hard as defence in depth.
 */
export const ACCESS_KEY_SCRYPT = Object.freeze({ N: 1 << 10, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

const REGISTRATION_KEY_LABEL = enc('peerlink/v1/registration-key\0');
const MAX_ID_BYTES = 255;

/**
 * The registration keys of one master key, derived with the master key's block compressed once:
 * what the server runs for every registration it takes.
 */
export function registrationKeyDeriver(masterKey: Uint8Array): (equipmentId: string, out?: Uint8Array) => Uint8Array {
  if (masterKey.length !== KEY_BYTES) throw new RangeError('registration master key must be 32 bytes');
  const master = blake2sKey(masterKey, KEY_BYTES);
  const input = Buffer.alloc(REGISTRATION_KEY_LABEL.length + MAX_ID_BYTES);
  REGISTRATION_KEY_LABEL.copy(input);
  return (equipmentId, out = Buffer.allocUnsafe(KEY_BYTES)) => {
    if (Buffer.byteLength(equipmentId, 'utf8') > MAX_ID_BYTES) throw new RangeError(`equipment ID longer than ${MAX_ID_BYTES} bytes`);
    const n = input.write(equipmentId, REGISTRATION_KEY_LABEL.length, 'utf8');
    return blake2sMac(master, input, out, REGISTRATION_KEY_LABEL.length + n);
  };
}

export function deriveRegistrationKey(masterKey: Uint8Array, equipmentId: string): Buffer {
  return registrationKeyDeriver(masterKey)(equipmentId) as Buffer;
}

/** Normalise what a person typed: NFKC, no spaces or dashes (labels group the secret), upper case. */
export function normalizePassword(password: string): string {
  return password
    .normalize('NFKC')
    .replace(/[\s-]+/g, '')
    .toUpperCase();
}

export function deriveAccessKey(password: string, equipmentId: string, signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    scrypt(enc(normalizePassword(password)), enc(`peerlink/v1/access-key\0${equipmentId}`), KEY_BYTES, ACCESS_KEY_SCRYPT, (err, key) => {
      if (err) reject(err);
      else if (signal?.aborted) reject(abortError(signal));
      else resolve(key);
    });
  });
}

export function deriveRequestTagKey(accessKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', accessKey, Buffer.alloc(0), enc('peerlink/v1/request-tag'), KEY_BYTES));
}

export function deriveTunnelPsk(
  accessKey: Uint8Array,
  clientNonce: Uint8Array,
  deviceNonce: Uint8Array,
  equipmentId: string,
  service: string,
): Buffer {
  const salt = Buffer.concat([clientNonce, deviceNonce]);
  const info = enc(`peerlink/v1/tunnel-psk\0${equipmentId}\0${service}`);
  return Buffer.from(hkdfSync('sha256', accessKey, salt, info, KEY_BYTES));
}

/**
 * What a client sends first on a reverse connection (it dialled the device's listening port), so
 * the device can tell which authorised request it is for. Only the two ends can compute it; it
 * grants nothing by itself (the TLS-PSK handshake that follows is what authenticates).
 */
export function reverseToken(accessKey: Uint8Array, clientNonce: Uint8Array): Buffer {
  return mac(accessKey, [enc('peerlink/v1/reverse-token\0'), clientNonce], REVERSE_TOKEN_BYTES);
}
export const REVERSE_TOKEN_BYTES = 16;

/** HMAC-SHA256 over the parts, truncated to `bytes`. */
export function mac(key: Uint8Array, parts: readonly Uint8Array[], bytes: number = MAC_BYTES): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, bytes);
}

/** Constant-time comparison; false (not a throw) on length mismatch. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The proof a device gives on its TLS connection to the server (S206), bound to that TLS session. */
export function attachProof(registrationKey: Uint8Array, requestId: Uint8Array, tlsExporter: Uint8Array): Buffer {
  return mac(registrationKey, [enc('peerlink/v1/attach\0'), requestId, tlsExporter], KEY_BYTES);
}

export const ATTACH_EXPORTER_LABEL = 'EXPORTER-peerlink-attach';

/**
 * A plain relay leg's join (frames.ts RELAY_LEG_*, issue 15): each side proves the key it shares
 * with the other, over both nonces and the request ID, so neither proof can be replayed on another
 * connection or reflected back (the labels differ). The key is the join token for the client (the
 * server gave it over the client's CA-verified TLS), K_reg for the device.
 */
export function relayLegProof(
  key: Uint8Array,
  by: 'server' | 'joiner',
  requestId: Uint8Array,
  joinerNonce: Uint8Array,
  serverNonce: Uint8Array,
): Buffer {
  return mac(key, [enc(`peerlink/v1/relay-leg/${by}\0`), requestId, joinerNonce, serverNonce], KEY_BYTES);
}
