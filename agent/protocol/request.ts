/**
 * The client's connect request, sealed end to end for the device (the server relays it
 * without being able to forge or alter it; it holds no key to do so).
 *
 *   version (u8) | client nonce (16) | timestamp ms (u64, server time as the client learnt it)
 *   | equipment id (u8 len) | service (u8 len) | advertised port (u16)
 *   [ | LAN count (u8, 0..2) | count x endpoint (family, address, port) [ | path hints (u8) ] ] | tag (32)
 *
 * The optional LAN part is the client's own local address and accept port (one per address
 * family), for a device on the same LAN (issue 14). Sealed, so the server can read it (to decide
 * whether client and device share a home) but not change it: a device dials only what the
 * password holder offered.
 *
 * The optional path hints (issue 15, agent/paths/relay-hint.ts) are what the client knows of its own
 * side: that it takes no inbound connection, that every direct path to this device failed last time.
 * They follow the LAN part (its count 0 when there is no LAN candidate) and are written only when
 * not zero, so a request without hints keeps the layout before them. Sealed like the rest: the
 * server cannot add one, and the only effect of a hint is that this client's connection is relayed.
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
  /** PathHint flags (agent/paths/relay-hint.ts); absent or 0: none. Unknown bits are ignored. */
  readonly hints?: number;
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
  const hints = req.hints ?? 0;
  if (!Number.isInteger(hints) || hints < 0 || hints > 0xff) throw new RangeError(`hints: expected a byte, found ${hints}`);
  if (lan.length > 0 || hints !== 0) {
    w.u8(lan.length);
    for (const ep of lan) writeEndpoint(w, ep);
  }
  if (hints !== 0) w.u8(hints);
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
  let hints = 0;
  if (r.remaining > 0) {
    const n = r.u8('lan.count');
    if (n > REQUEST_LAN_MAX) throw new ProtocolError('request.lan.count', `expected 0-${REQUEST_LAN_MAX}, found ${n}`);
    for (let i = 0; i < n; i++) {
      const ep = readEndpoint(r, `lan[${i}]`);
      if (ep.port === 0) throw new ProtocolError(`request.lan[${i}].port`, 'port 0 is not allowed');
      lan.push(ep);
    }
    if (r.remaining > 0) {
      hints = r.u8('hints');
      if (hints === 0) throw new ProtocolError('request.hints', 'written only when not 0');
    } else if (n === 0) throw new ProtocolError('request.lan.count', 'count 0 only before path hints');
  }
  r.end();
  return {
    request: {
      clientNonce,
      timestampMs,
      equipmentId,
      service,
      advertisedPort,
      ...(lan.length ? { lan } : {}),
      ...(hints ? { hints } : {}),
    },
    signed,
    tag,
  };
}

export function verifyRequestTag(parsed: ParsedRequest, requestTagKey: Uint8Array): boolean {
  return equalBytes(mac(requestTagKey, [parsed.signed], KEY_BYTES), parsed.tag);
}

/**
 * The LAN candidates a request offers, read without its tag: what a server may look at (it holds
 * no key to verify the tag, P2; the device verifies it and dials only a candidate that was sealed).
 * Empty for a malformed request, which the device refuses anyway.
 */
export function offeredLanCandidates(buf: Uint8Array): readonly Endpoint[] {
  try {
    return parseRequest(buf).request.lan ?? [];
  } catch {
    return [];
  }
}

/**
 * The client nonce a request carries, read without its tag (like offeredLanCandidates): the server
 * matches the client's companion connection by it (server/companions.ts). Undefined for a malformed
 * request.
 */
export function offeredClientNonce(buf: Uint8Array): Buffer | undefined {
  try {
    return parseRequest(buf).request.clientNonce;
  } catch {
    return undefined;
  }
}
