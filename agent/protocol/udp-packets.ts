/**
 * UDP packets between device and rendezvous server (S201/S202, packet 205).
 *
 * Common header: magic "PL" (u16) | version (u8) | type (u8). Every packet ends with a
 * 16-byte HMAC-SHA256 tag keyed with the device's registration key, over all bytes before it.
 *
 *   REGISTER     device -> server  header | id (u8 len + bytes) | timestamp ms (u64) | nonce (8)
 *                                  | zero padding to >= 64 bytes in all | tag (16)
 *   REGISTER_ACK server -> device  header | status (u8) | echoed nonce (8) | server time ms (u64)
 *                                  | observed endpoint (family, address, port) | tag (16)
 *   NOTIFY       server -> device  header | request id (16) | server time ms (u64) | tag (16)
 *   PROBE        device -> server  header | flags (u8) | id (u8 len + bytes) | timestamp ms (u64) | nonce (8)
 *                                  | zero padding to >= 64 bytes in all | tag (16); answered with a
 *                                  REGISTER_ACK, but changes nothing at the server
 *   MAPPING_CHECK server -> device header | echoed probe nonce (8) | server time ms (u64) | tag (16),
 *                                  sent to the registered mapping when the probe asks for it
 *
 * The ack is never longer than the registration it answers (P6). Decoding is split in two:
 * `peek*` parses the structure without a key (to find the ID), `verify*` checks the tag.
 */
import { ProtocolError } from '../common/errors.js';
import { ByteReader, ByteWriter } from './bytes.js';
import {
  EQUIPMENT_ID_MAX_BYTES,
  EQUIPMENT_ID_PATTERN,
  PROBE_FLAG_CHECK_MAPPING,
  PROBE_WITH_CHECK_MIN_BYTES,
  PROTOCOL_VERSION,
  REGISTER_MIN_BYTES,
  REQUEST_ID_BYTES,
  UDP_MAGIC,
  UDP_MAX_BYTES,
  UDP_TYPE_MAPPING_CHECK,
  UDP_TYPE_NOTIFY,
  UDP_TYPE_PROBE,
  UDP_TYPE_REGISTER,
  UDP_TYPE_REGISTER_ACK,
} from './constants.js';
import { equalBytes, mac, MAC_BYTES } from './keys.js';
import { readEndpoint, writeEndpoint, type Endpoint } from './address.js';

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
  readonly timestampMs: number;
  readonly nonce: Buffer;
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
}

export interface Probe {
  readonly type: typeof UDP_TYPE_PROBE;
  readonly flags: number;
  readonly equipmentId: string;
  readonly timestampMs: number;
  readonly nonce: Buffer;
}

export interface MappingCheck {
  readonly type: typeof UDP_TYPE_MAPPING_CHECK;
  readonly nonce: Buffer;
  readonly serverTimeMs: number;
}

export type UdpPacket = Register | RegisterAck | Notify | Probe | MappingCheck;

/** A parsed packet with what its tag covers, so the tag can be checked once the key is known. */
export interface Parsed<T extends UdpPacket> {
  readonly packet: T;
  readonly signed: Buffer;
  readonly tag: Buffer;
}

function header(type: number): ByteWriter {
  return new ByteWriter().u16(UDP_MAGIC).u8(PROTOCOL_VERSION).u8(type);
}

function seal(w: ByteWriter, key: Uint8Array): Buffer {
  const body = w.toBuffer();
  return Buffer.concat([body, mac(key, [body])]);
}

export function encodeRegister(p: Omit<Register, 'type'>, key: Uint8Array): Buffer {
  const w = header(UDP_TYPE_REGISTER).shortString(p.equipmentId).timeMs(p.timestampMs).bytes(p.nonce);
  const pad = REGISTER_MIN_BYTES - MAC_BYTES - w.length;
  if (pad > 0) w.zeros(pad);
  return seal(w, key);
}

export function encodeProbe(p: Omit<Probe, 'type'>, key: Uint8Array): Buffer {
  const w = header(UDP_TYPE_PROBE).u8(p.flags).shortString(p.equipmentId).timeMs(p.timestampMs).bytes(p.nonce);
  const min = (p.flags & PROBE_FLAG_CHECK_MAPPING) !== 0 ? PROBE_WITH_CHECK_MIN_BYTES : REGISTER_MIN_BYTES;
  const pad = min - MAC_BYTES - w.length;
  if (pad > 0) w.zeros(pad);
  return seal(w, key);
}

export function encodeMappingCheck(p: Omit<MappingCheck, 'type'>, key: Uint8Array): Buffer {
  return seal(header(UDP_TYPE_MAPPING_CHECK).bytes(p.nonce).timeMs(p.serverTimeMs), key);
}

export function encodeRegisterAck(p: Omit<RegisterAck, 'type'>, key: Uint8Array): Buffer {
  const w = header(UDP_TYPE_REGISTER_ACK).u8(p.status).bytes(p.nonce).timeMs(p.serverTimeMs);
  writeEndpoint(w, p.observed);
  return seal(w, key);
}

export function encodeNotify(p: Omit<Notify, 'type'>, key: Uint8Array): Buffer {
  return seal(header(UDP_TYPE_NOTIFY).bytes(p.requestId).timeMs(p.serverTimeMs), key);
}

/** Parse any UDP packet's structure. Throws ProtocolError naming the bad field. */
export function parseUdpPacket(buf: Uint8Array): Parsed<UdpPacket> {
  if (buf.length > UDP_MAX_BYTES) throw new ProtocolError('udp', `oversized: ${buf.length} bytes > ${UDP_MAX_BYTES}`);
  if (buf.length < 4 + MAC_BYTES) throw new ProtocolError('udp', `truncated: ${buf.length} bytes`);
  const signed = Buffer.from(buf.subarray(0, buf.length - MAC_BYTES));
  const tag = Buffer.from(buf.subarray(buf.length - MAC_BYTES));
  const r = new ByteReader(signed, 'udp');
  const magic = r.u16('magic');
  if (magic !== UDP_MAGIC) throw new ProtocolError('udp.magic', `expected 0x${UDP_MAGIC.toString(16)}, found 0x${magic.toString(16)}`);
  const version = r.u8('version');
  if (version !== PROTOCOL_VERSION) throw new ProtocolError('udp.version', `unsupported version ${version}`);
  const type = r.u8('type');
  let packet: UdpPacket;
  switch (type) {
    case UDP_TYPE_REGISTER: {
      if (buf.length < REGISTER_MIN_BYTES) throw new ProtocolError('udp.register', `shorter than ${REGISTER_MIN_BYTES} bytes`);
      const equipmentId = r.shortString('equipmentId', EQUIPMENT_ID_MAX_BYTES, EQUIPMENT_ID_PATTERN);
      const timestampMs = r.timeMs('timestamp');
      const nonce = r.bytes(REGISTER_NONCE_BYTES, 'nonce');
      const padding = r.bytes(r.remaining, 'padding');
      if (padding.some((b) => b !== 0)) throw new ProtocolError('udp.padding', 'must be zero');
      packet = { type, equipmentId, timestampMs, nonce };
      break;
    }
    case UDP_TYPE_REGISTER_ACK: {
      const status = r.u8('status');
      if (status !== AckStatus.OK && status !== AckStatus.CLOCK_SKEW) throw new ProtocolError('udp.status', `unknown status ${status}`);
      const nonce = r.bytes(REGISTER_NONCE_BYTES, 'nonce');
      const serverTimeMs = r.timeMs('serverTime');
      const observed = readEndpoint(r, 'observed');
      r.end();
      packet = { type, status, nonce, serverTimeMs, observed };
      break;
    }
    case UDP_TYPE_NOTIFY: {
      const requestId = r.bytes(REQUEST_ID_BYTES, 'requestId');
      const serverTimeMs = r.timeMs('serverTime');
      r.end();
      packet = { type, requestId, serverTimeMs };
      break;
    }
    case UDP_TYPE_PROBE: {
      if (buf.length < REGISTER_MIN_BYTES) throw new ProtocolError('udp.probe', `shorter than ${REGISTER_MIN_BYTES} bytes`);
      const flags = r.u8('flags');
      const equipmentId = r.shortString('equipmentId', EQUIPMENT_ID_MAX_BYTES, EQUIPMENT_ID_PATTERN);
      const timestampMs = r.timeMs('timestamp');
      const nonce = r.bytes(REGISTER_NONCE_BYTES, 'nonce');
      const padding = r.bytes(r.remaining, 'padding');
      if (padding.some((b) => b !== 0)) throw new ProtocolError('udp.padding', 'must be zero');
      packet = { type, flags, equipmentId, timestampMs, nonce };
      break;
    }
    case UDP_TYPE_MAPPING_CHECK: {
      const nonce = r.bytes(REGISTER_NONCE_BYTES, 'nonce');
      const serverTimeMs = r.timeMs('serverTime');
      r.end();
      packet = { type, nonce, serverTimeMs };
      break;
    }
    default:
      throw new ProtocolError('udp.type', `unknown type ${type}`);
  }
  return { packet, signed, tag };
}

export function verifyTag(parsed: Parsed<UdpPacket>, key: Uint8Array): boolean {
  return equalBytes(mac(key, [parsed.signed]), parsed.tag);
}
