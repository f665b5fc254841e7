/**
 * The client's connect request, sealed end to end for the device (the server relays it
 * without being able to forge or alter it; it holds no key to do so).
 *
 *   version (u8) | client nonce (16) | timestamp ms (u64, server time as the client learnt it)
 *   | equipment id (u8 len) | service (u8 len) | advertised port (u16)
 *   [ | LAN count (u8, 1..2) | count x endpoint (family, address, port) ] | tag (32)
 *
 * The optional LAN part is the client's own local address and accept port (one per address
 * family), for a device on the same LAN (issue 14). Sealed, so the server can read it (to decide
 * whether client and device share a home) but not change it: a device dials only what the
 * password holder offered.
 *
 * tag = HMAC-SHA256(requestTagKey, every byte before it). The nonce makes each request
 * single-use (the device remembers nonces for the freshness window) and salts the tunnel PSK.
 */
import { ProtocolError } from '../common/errors.js';
import { ByteReader, ByteWriter } from './bytes.js';
import {
  EQUIPMENT_ID_MAX_BYTES,
  EQUIPMENT_ID_PATTERN,
  PROTOCOL_VERSION,
  SERVICE_NAME_MAX_BYTES,
  SERVICE_NAME_PATTERN,
} from './constants.js';
import { equalBytes, KEY_BYTES, mac, NONCE_BYTES } from './keys.js';
import { readEndpoint, writeEndpoint, type Endpoint } from './address.js';

/** LAN candidates in a request: one per address family. */
export const REQUEST_LAN_MAX = 2;

export interface ConnectRequest {
  readonly clientNonce: Buffer;
  readonly timestampMs: number;
  readonly equipmentId: string;
  readonly service: string;
  readonly advertisedPort: number;
  /** The client's LAN candidates (local address, accept port); absent or empty: none offered. */
  readonly lan?: readonly Endpoint[];
}

export interface ParsedRequest {
  readonly request: ConnectRequest;
  readonly signed: Buffer;
  readonly tag: Buffer;
}

export function sealRequest(req: ConnectRequest, requestTagKey: Uint8Array): Buffer {
  const w = new ByteWriter()
    .u8(PROTOCOL_VERSION)
    .bytes(req.clientNonce)
    .timeMs(req.timestampMs)
    .shortString(req.equipmentId)
    .shortString(req.service)
    .u16(req.advertisedPort);
  const lan = req.lan ?? [];
  if (lan.length > REQUEST_LAN_MAX) throw new RangeError(`at most ${REQUEST_LAN_MAX} LAN candidates`);
  if (lan.length > 0) {
    w.u8(lan.length);
    for (const ep of lan) writeEndpoint(w, ep);
  }
  const body = w.toBuffer();
  return Buffer.concat([body, mac(requestTagKey, [body], KEY_BYTES)]);
}

export function parseRequest(buf: Uint8Array): ParsedRequest {
  if (buf.length < KEY_BYTES + 1) throw new ProtocolError('request', `truncated: ${buf.length} bytes`);
  const signed = Buffer.from(buf.subarray(0, buf.length - KEY_BYTES));
  const tag = Buffer.from(buf.subarray(buf.length - KEY_BYTES));
  const r = new ByteReader(signed, 'request');
  const version = r.u8('version');
  if (version !== PROTOCOL_VERSION) throw new ProtocolError('request.version', `unsupported version ${version}`);
  const clientNonce = r.bytes(NONCE_BYTES, 'clientNonce');
  const timestampMs = r.timeMs('timestamp');
  const equipmentId = r.shortString('equipmentId', EQUIPMENT_ID_MAX_BYTES, EQUIPMENT_ID_PATTERN);
  const service = r.shortString('service', SERVICE_NAME_MAX_BYTES, SERVICE_NAME_PATTERN);
  const advertisedPort = r.u16('advertisedPort');
  if (advertisedPort === 0) throw new ProtocolError('request.advertisedPort', 'port 0 is not allowed');
  const lan: Endpoint[] = [];
  if (r.remaining > 0) {
    const n = r.u8('lan.count');
    if (n < 1 || n > REQUEST_LAN_MAX) throw new ProtocolError('request.lan.count', `expected 1-${REQUEST_LAN_MAX}, found ${n}`);
    for (let i = 0; i < n; i++) {
      const ep = readEndpoint(r, `lan[${i}]`);
      if (ep.port === 0) throw new ProtocolError(`request.lan[${i}].port`, 'port 0 is not allowed');
      lan.push(ep);
    }
  }
  r.end();
  return { request: { clientNonce, timestampMs, equipmentId, service, advertisedPort, ...(lan.length ? { lan } : {}) }, signed, tag };
}

export function verifyRequestTag(parsed: ParsedRequest, requestTagKey: Uint8Array): boolean {
  return equalBytes(mac(requestTagKey, [parsed.signed], KEY_BYTES), parsed.tag);
}
