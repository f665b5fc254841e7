/**
 * The client's connect request, sealed end to end for the device (the server relays it
 * without being able to forge or alter it; it holds no key to do so).
 *
 *   version (u8) | client nonce (16) | timestamp ms (u64, server time as the client learnt it)
 *   | equipment id (u8 len) | service (u8 len) | advertised port (u16) | tag (32)
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

export interface ConnectRequest {
  readonly clientNonce: Buffer;
  readonly timestampMs: number;
  readonly equipmentId: string;
  readonly service: string;
  readonly advertisedPort: number;
}

export interface ParsedRequest {
  readonly request: ConnectRequest;
  readonly signed: Buffer;
  readonly tag: Buffer;
}

export function sealRequest(req: ConnectRequest, requestTagKey: Uint8Array): Buffer {
  const body = new ByteWriter()
    .u8(PROTOCOL_VERSION)
    .bytes(req.clientNonce)
    .timeMs(req.timestampMs)
    .shortString(req.equipmentId)
    .shortString(req.service)
    .u16(req.advertisedPort)
    .toBuffer();
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
  r.end();
  return { request: { clientNonce, timestampMs, equipmentId, service, advertisedPort }, signed, tag };
}

export function verifyRequestTag(parsed: ParsedRequest, requestTagKey: Uint8Array): boolean {
  return equalBytes(mac(requestTagKey, [parsed.signed], KEY_BYTES), parsed.tag);
}
