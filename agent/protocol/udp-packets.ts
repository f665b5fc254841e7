/**
 * UDP packets between device and rendezvous server (S201/S202, packet 205).
 *
 * Common header: magic "PL" (u16) | version (u8) | type (u8). Every packet ends with a
 * 16-byte tag: keyed BLAKE2s with a 16-byte output (RFC 7693; blake2s.ts says why not HMAC), keyed
 * with the device's registration key, over all bytes before it.
 *
 *   REGISTER     device -> server  header | id (u8 len + bytes) | timestamp ms (u64) | nonce (8)
 *                                  | cookie (16, zero: none) | zero padding to >= 64 bytes in all | tag (16)
 *   REGISTER_ACK server -> device  header | status (u8) | echoed nonce (8) | server time ms (u64)
 *                                  | observed endpoint (family, address, port) | tag (16)
 *   NOTIFY       server -> device  header | request id (16) | server time ms (u64) | wake (40, wake.ts) | tag (16)
 *   PROBE        device -> server  header | flags (u8) | id (u8 len + bytes) | timestamp ms (u64) | nonce (8)
 *                                  | cookie (16) | zero padding to >= 64 bytes in all | tag (16); answered
 *                                  with a REGISTER_ACK, but changes nothing at the server
 *   MAPPING_CHECK server -> device header | echoed probe nonce (8) | server time ms (u64) | tag (16),
 *                                  sent to the registered mapping when the probe asks for it
 *   REFUSE       device -> server  header | id (u8 len + bytes) | request id (16) | reason (u8) | tag (16):
 *                                  the wake proof of that request failed; the device will not attach (P9)
 *   COOKIE       server -> device  header | echoed nonce (8) | server time ms (u64) | cookie (16) | tag (16):
 *                                  the answer to a REGISTER or PROBE from a source not yet shown to
 *                                  receive (return routability, P6); send it again with the cookie
 *   CLIENT_PROBE client -> server  header | nonce (16) | zero padding to >= 64 bytes in all | 16 zero bytes
 *                                  (no tag: a client has no key the server knows)
 *   CLIENT_PROBE_ACK server -> client  header | echoed nonce (16) | observed endpoint | 16 zero bytes
 *
 * The ack is never longer than the registration it answers (P6). Decoding is split in two:
 * `peek*` parses the structure without a key (to find the ID), `verify*` checks the tag.
 */
import { ProtocolError } from '../common/errors.js';
import { IDENTITY_NAME_MAX_BYTES, IDENTITY_NAME_PATTERN, identityName, splitIdentityName } from './identity-name.js';
import { ByteReader, ByteWriter } from './bytes.js';
import {
  COOKIE_BYTES,
  PROBE_FLAG_CHECK_MAPPING,
  PROBE_WITH_CHECK_MIN_BYTES,
  PROTOCOL_VERSION,
  REGISTER_MIN_BYTES,
  REQUEST_ID_BYTES,
  UDP_MAGIC,
  UDP_MAX_BYTES,
  CLIENT_PROBE_NONCE_BYTES,
  UDP_TYPE_CLIENT_PROBE,
  UDP_TYPE_CLIENT_PROBE_ACK,
  UDP_TYPE_COOKIE,
  UDP_TYPE_MAPPING_CHECK,
  UDP_TYPE_NOTIFY,
  UDP_TYPE_PROBE,
  UDP_TYPE_REFUSE,
  UDP_TYPE_REGISTER,
  UDP_TYPE_REGISTER_ACK,
} from './constants.js';
import { KEY_BYTES, MAC_BYTES, registrationKeyDeriver } from './keys.js';
import { blake2sKey, blake2sMac, type Blake2sKey } from './blake2s.js';
import { readEndpoint, writeEndpoint, type Endpoint } from './address.js';
import { readWake, writeWake, type Wake } from './wake.js';

export const REGISTER_NONCE_BYTES = 8;

export const AckStatus = {
  OK: 0,
  /** The registration's timestamp is outside the window: the ack carries the server time to adopt. */
  CLOCK_SKEW: 1,
} as const;
export type AckStatusValue = (typeof AckStatus)[keyof typeof AckStatus];

export interface Register {
  readonly type: typeof UDP_TYPE_REGISTER;
  readonly equipmentId: string;
  /** The identity's generation (identity-name.ts); absent: 0. */
  readonly generation?: number;
  readonly timestampMs: number;
  readonly nonce: Buffer;
  /** The server's cookie for this source (all zero: none yet). */
  readonly cookie: Buffer;
}

export interface RegisterAck {
  readonly type: typeof UDP_TYPE_REGISTER_ACK;
  readonly status: AckStatusValue;
  readonly nonce: Buffer;
  readonly serverTimeMs: number;
  readonly observed: Endpoint;
}

export interface Notify {
  readonly type: typeof UDP_TYPE_NOTIFY;
  readonly requestId: Buffer;
  readonly serverTimeMs: number;
  /** The client's wake proof, passed on unchecked by the server (P9). */
  readonly wake: Wake;
}

/** Why a device refused a wake proof; the server answers the client with the matching status. */
/** 4: the wake verified under a key the owner took away (a revoked client, a replaced password; issue 19). */
export const RefuseReason = { BAD_TAG: 1, STALE: 2, REPLAYED: 3, REVOKED: 4 } as const;
export type RefuseReasonValue = (typeof RefuseReason)[keyof typeof RefuseReason];

export interface Refuse {
  readonly type: typeof UDP_TYPE_REFUSE;
  readonly equipmentId: string;
  readonly generation?: number;
  readonly requestId: Buffer;
  readonly reason: RefuseReasonValue;
}

export interface Probe {
  readonly type: typeof UDP_TYPE_PROBE;
  readonly flags: number;
  readonly equipmentId: string;
  readonly generation?: number;
  readonly timestampMs: number;
  readonly nonce: Buffer;
  readonly cookie: Buffer;
}

export interface Cookie {
  readonly type: typeof UDP_TYPE_COOKIE;
  readonly nonce: Buffer;
  readonly serverTimeMs: number;
  readonly cookie: Buffer;
}

export interface MappingCheck {
  readonly type: typeof UDP_TYPE_MAPPING_CHECK;
  readonly nonce: Buffer;
  readonly serverTimeMs: number;
}

/** A client's keyless "what address do you see?" (constants.ts UDP_TYPE_CLIENT_PROBE). */
export interface ClientProbe {
  readonly type: typeof UDP_TYPE_CLIENT_PROBE;
  readonly nonce: Buffer;
}

export interface ClientProbeAck {
  readonly type: typeof UDP_TYPE_CLIENT_PROBE_ACK;
  readonly nonce: Buffer;
  readonly observed: Endpoint;
}

export type UdpPacket = Register | RegisterAck | Notify | Probe | MappingCheck | Cookie | Refuse | ClientProbe | ClientProbeAck;

/** What a sender gives: the cookie may be left out (none yet). */
export type WithOptionalCookie<T extends { cookie: Buffer }> = Omit<T, 'type' | 'cookie'> & { readonly cookie?: Uint8Array };

export const NO_COOKIE: Buffer = Buffer.alloc(COOKIE_BYTES);

/** A parsed packet and its datagram, so the tag can be checked once the key is known. */
export interface Parsed<T extends UdpPacket> {
  readonly packet: T;
  /** The whole datagram: its last MAC_BYTES are the tag over all bytes before them. */
  readonly datagram: Buffer;
}

/** A device's registration key: its bytes, or prepared once (`udpKey`; the server keeps these). */
export type UdpKey = Uint8Array | Blake2sKey;

/** Prepare a registration key for the packet tags: the key block compressed once. */
export function udpKey(registrationKey: Uint8Array): Blake2sKey {
  return blake2sKey(registrationKey, MAC_BYTES);
}

/**
 * The server's side: each device's prepared tag key, derived from the master key for every
 * packet (two BLAKE2s compressions; keys.ts `registrationKeyDeriver`), never stored.
 */
export function deviceUdpKeys(masterKey: Uint8Array): (equipmentId: string) => Blake2sKey {
  const registrationKey = registrationKeyDeriver(masterKey);
  const scratch = new Uint8Array(KEY_BYTES);
  return (equipmentId) => udpKey(registrationKey(equipmentId, scratch));
}

/** Raw key bytes are a Uint8Array; a prepared key is the Int32Array of its state. */
const prepared = (key: UdpKey): Blake2sKey => (key instanceof Int32Array ? key : udpKey(key));

const tagScratch = new Uint8Array(MAC_BYTES);

function header(type: number): ByteWriter {
  return new ByteWriter().u16(UDP_MAGIC).u8(PROTOCOL_VERSION).u8(type);
}

/** Append the tag over everything written so far. */
function seal(w: ByteWriter, key: UdpKey): Buffer {
  const signedBytes = w.length;
  const out = w.zeros(MAC_BYTES).toBuffer();
  blake2sMac(prepared(key), out, out, signedBytes, signedBytes);
  return out;
}

export function encodeRegister(p: WithOptionalCookie<Register>, key: UdpKey): Buffer {
  const w = header(UDP_TYPE_REGISTER)
    .shortString(identityName(p.equipmentId, p.generation))
    .timeMs(p.timestampMs)
    .bytes(p.nonce)
    .bytes(cookieBytes(p.cookie));
  const pad = REGISTER_MIN_BYTES - MAC_BYTES - w.length;
  if (pad > 0) w.zeros(pad);
  return seal(w, key);
}

function cookieBytes(cookie: Uint8Array | undefined): Uint8Array {
  if (cookie === undefined) return NO_COOKIE;
  if (cookie.length !== COOKIE_BYTES) throw new RangeError(`cookie must be ${COOKIE_BYTES} bytes`);
  return cookie;
}

export function encodeProbe(p: WithOptionalCookie<Probe>, key: UdpKey): Buffer {
  const w = header(UDP_TYPE_PROBE)
    .u8(p.flags)
    .shortString(identityName(p.equipmentId, p.generation))
    .timeMs(p.timestampMs)
    .bytes(p.nonce)
    .bytes(cookieBytes(p.cookie));
  const min = (p.flags & PROBE_FLAG_CHECK_MAPPING) !== 0 ? PROBE_WITH_CHECK_MIN_BYTES : REGISTER_MIN_BYTES;
  const pad = min - MAC_BYTES - w.length;
  if (pad > 0) w.zeros(pad);
  return seal(w, key);
}

export function encodeMappingCheck(p: Omit<MappingCheck, 'type'>, key: UdpKey): Buffer {
  return seal(header(UDP_TYPE_MAPPING_CHECK).bytes(p.nonce).timeMs(p.serverTimeMs), key);
}

export function encodeRegisterAck(p: Omit<RegisterAck, 'type'>, key: UdpKey): Buffer {
  const w = header(UDP_TYPE_REGISTER_ACK).u8(p.status).bytes(p.nonce).timeMs(p.serverTimeMs);
  writeEndpoint(w, p.observed);
  return seal(w, key);
}

export function encodeCookie(p: Omit<Cookie, 'type'>, key: UdpKey): Buffer {
  return seal(header(UDP_TYPE_COOKIE).bytes(p.nonce).timeMs(p.serverTimeMs).bytes(cookieBytes(p.cookie)), key);
}

export function encodeNotify(p: Omit<Notify, 'type'>, key: UdpKey): Buffer {
  return seal(writeWake(header(UDP_TYPE_NOTIFY).bytes(p.requestId).timeMs(p.serverTimeMs), p.wake), key);
}

export function encodeRefuse(p: Omit<Refuse, 'type'>, key: UdpKey): Buffer {
  return seal(header(UDP_TYPE_REFUSE).shortString(identityName(p.equipmentId, p.generation)).bytes(p.requestId).u8(p.reason), key);
}

/** The keyless packets end in MAC_BYTES zero bytes where the others carry their tag (one layout to parse). */
function unsealed(w: ByteWriter): Buffer {
  return w.zeros(MAC_BYTES).toBuffer();
}

export function encodeClientProbe(p: Omit<ClientProbe, 'type'>): Buffer {
  if (p.nonce.length !== CLIENT_PROBE_NONCE_BYTES) throw new RangeError(`nonce must be ${CLIENT_PROBE_NONCE_BYTES} bytes`);
  const w = header(UDP_TYPE_CLIENT_PROBE).bytes(p.nonce);
  // Padded so that no answer is larger (P6).
  w.zeros(REGISTER_MIN_BYTES - MAC_BYTES - w.length);
  return unsealed(w);
}

export function encodeClientProbeAck(p: Omit<ClientProbeAck, 'type'>): Buffer {
  const w = header(UDP_TYPE_CLIENT_PROBE_ACK).bytes(p.nonce);
  writeEndpoint(w, p.observed);
  return unsealed(w);
}

function zeroTrailer(datagram: Buffer): void {
  for (let i = datagram.length - MAC_BYTES; i < datagram.length; i++)
    if (datagram[i] !== 0) throw new ProtocolError('udp.trailer', 'must be zero (no tag)');
}

function zeroPadding(r: ByteReader): void {
  if (!r.zeros()) throw new ProtocolError('udp.padding', 'must be zero');
}

/**
 * Parse any UDP packet's structure. Throws ProtocolError naming the bad field. The result's
 * fields are views into `buf`: do not reuse it while they are in use.
 */
export function parseUdpPacket(buf: Uint8Array): Parsed<UdpPacket> {
  if (buf.length > UDP_MAX_BYTES) throw new ProtocolError('udp', `oversized: ${buf.length} bytes > ${UDP_MAX_BYTES}`);
  if (buf.length < 4 + MAC_BYTES) throw new ProtocolError('udp', `truncated: ${buf.length} bytes`);
  // Views, not copies: a datagram's buffer is the receiver's own (dgram allocates one per message).
  const datagram = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const r = new ByteReader(datagram, 'udp', datagram.length - MAC_BYTES);
  const magic = r.u16('magic');
  if (magic !== UDP_MAGIC) throw new ProtocolError('udp.magic', `expected 0x${UDP_MAGIC.toString(16)}, found 0x${magic.toString(16)}`);
  const version = r.u8('version');
  if (version !== PROTOCOL_VERSION) throw new ProtocolError('udp.version', `unsupported version ${version}`);
  const type = r.u8('type');
  let packet: UdpPacket;
  switch (type) {
    case UDP_TYPE_REGISTER: {
      if (buf.length < REGISTER_MIN_BYTES) throw new ProtocolError('udp.register', `shorter than ${REGISTER_MIN_BYTES} bytes`);
      const name = r.shortString('equipmentId', IDENTITY_NAME_MAX_BYTES, IDENTITY_NAME_PATTERN);
      const timestampMs = r.timeMs('timestamp');
      const nonce = r.view(REGISTER_NONCE_BYTES, 'nonce');
      const cookie = r.view(COOKIE_BYTES, 'cookie');
      zeroPadding(r);
      // `generation` only when not 0: generation 0 parses to exactly what it did before generations
      // (and, on the fleet's hot path, without splitting the name).
      if (name.indexOf('@') < 0) packet = { type, equipmentId: name, timestampMs, nonce, cookie };
      else {
        const { equipmentId, generation } = splitIdentityName(name);
        packet = { type, equipmentId, generation, timestampMs, nonce, cookie };
      }
      break;
    }
    case UDP_TYPE_REGISTER_ACK: {
      const status = r.u8('status');
      if (status !== AckStatus.OK && status !== AckStatus.CLOCK_SKEW) throw new ProtocolError('udp.status', `unknown status ${status}`);
      const nonce = r.view(REGISTER_NONCE_BYTES, 'nonce');
      const serverTimeMs = r.timeMs('serverTime');
      const observed = readEndpoint(r, 'observed');
      r.end();
      packet = { type, status, nonce, serverTimeMs, observed };
      break;
    }
    case UDP_TYPE_NOTIFY: {
      const requestId = r.view(REQUEST_ID_BYTES, 'requestId');
      const serverTimeMs = r.timeMs('serverTime');
      const wake = readWake(r, 'wake');
      r.end();
      packet = { type, requestId, serverTimeMs, wake };
      break;
    }
    case UDP_TYPE_REFUSE: {
      const { equipmentId, generation } = splitIdentityName(r.shortString('equipmentId', IDENTITY_NAME_MAX_BYTES, IDENTITY_NAME_PATTERN));
      const requestId = r.view(REQUEST_ID_BYTES, 'requestId');
      const reason = r.u8('reason');
      if (!(Object.values(RefuseReason) as number[]).includes(reason))
        throw new ProtocolError('udp.reason', `unknown refusal reason ${reason}`);
      r.end();
      packet =
        generation === 0
          ? { type, equipmentId, requestId, reason: reason as RefuseReasonValue }
          : { type, equipmentId, generation, requestId, reason: reason as RefuseReasonValue };
      break;
    }
    case UDP_TYPE_PROBE: {
      if (buf.length < REGISTER_MIN_BYTES) throw new ProtocolError('udp.probe', `shorter than ${REGISTER_MIN_BYTES} bytes`);
      const flags = r.u8('flags');
      const { equipmentId, generation } = splitIdentityName(r.shortString('equipmentId', IDENTITY_NAME_MAX_BYTES, IDENTITY_NAME_PATTERN));
      const timestampMs = r.timeMs('timestamp');
      const nonce = r.view(REGISTER_NONCE_BYTES, 'nonce');
      const cookie = r.view(COOKIE_BYTES, 'cookie');
      zeroPadding(r);
      packet =
        generation === 0
          ? { type, flags, equipmentId, timestampMs, nonce, cookie }
          : { type, flags, equipmentId, generation, timestampMs, nonce, cookie };
      break;
    }
    case UDP_TYPE_MAPPING_CHECK: {
      const nonce = r.view(REGISTER_NONCE_BYTES, 'nonce');
      const serverTimeMs = r.timeMs('serverTime');
      r.end();
      packet = { type, nonce, serverTimeMs };
      break;
    }
    case UDP_TYPE_COOKIE: {
      const nonce = r.view(REGISTER_NONCE_BYTES, 'nonce');
      const serverTimeMs = r.timeMs('serverTime');
      const cookie = r.view(COOKIE_BYTES, 'cookie');
      r.end();
      packet = { type, nonce, serverTimeMs, cookie };
      break;
    }
    case UDP_TYPE_CLIENT_PROBE: {
      if (buf.length < REGISTER_MIN_BYTES) throw new ProtocolError('udp.clientProbe', `shorter than ${REGISTER_MIN_BYTES} bytes`);
      const nonce = r.view(CLIENT_PROBE_NONCE_BYTES, 'nonce');
      zeroPadding(r);
      zeroTrailer(datagram);
      packet = { type, nonce };
      break;
    }
    case UDP_TYPE_CLIENT_PROBE_ACK: {
      const nonce = r.view(CLIENT_PROBE_NONCE_BYTES, 'nonce');
      const observed = readEndpoint(r, 'observed');
      r.end();
      zeroTrailer(datagram);
      packet = { type, nonce, observed };
      break;
    }
    default:
      throw new ProtocolError('udp.type', `unknown type ${type}`);
  }
  return { packet, datagram };
}

export function verifyTag(parsed: Parsed<UdpPacket>, key: UdpKey): boolean {
  const d = parsed.datagram;
  const signedBytes = d.length - MAC_BYTES;
  blake2sMac(prepared(key), d, tagScratch, signedBytes);
  // Constant time: every byte is compared whatever the first difference.
  let diff = 0;
  for (let i = 0; i < MAC_BYTES; i++) diff |= tagScratch[i]! ^ d[signedBytes + i]!;
  return diff === 0;
}
