/**
 * Pairing and the owner's controls (issue 19). Both run inside the end-to-end TLS-PSK channel to
 * the reserved service OWNER_SERVICE, so the rendezvous server sees neither a message nor a key
 * (P2). One request and one answer per session, each a line of JSON (at most OWNER_MESSAGE_MAX_BYTES).
 *
 *  clientKey = HKDF-SHA256(ikm = TLS-exporter("EXPORTER-peerlink-pair", ctx = clientId, 32),
 *                          salt = clientId, info = "peerlink/v1/client-key\0" || id)
 *      The per-client key a pairing makes. Derived by both ends from the pairing session, never
 *      sent. A paired client uses it wherever an unpaired one uses the access key A (wake key,
 *      request tag key, tunnel PSK, reverse token).
 */
import { hkdfSync } from 'node:crypto';
import { ProtocolError } from '../common/errors.js';
import { KEY_BYTES } from './keys.js';

/** The service name that selects the owner's controls (never a configured service). */
export const OWNER_SERVICE = 'peerlink.owner';
export const PAIR_EXPORTER_LABEL = 'EXPORTER-peerlink-pair';
export const CLIENT_ID_BYTES = 16;
export const OWNER_MESSAGE_MAX_BYTES = 4096;
export const CLIENT_NAME_MAX_CHARS = 64;
/** Pairings a device keeps; the wake check tries each key (one HMAC each), so it is bounded. */
export const MAX_PAIRINGS = 32;
/** Whole owner exchange deadline at the device. */
export const OWNER_EXCHANGE_TIMEOUT_MS = 10_000;

export function deriveClientKey(exporter: Uint8Array, clientId: Uint8Array, equipmentId: string): Buffer {
  const info = Buffer.from(`peerlink/v1/client-key\0${equipmentId}`, 'utf8');
  return Buffer.from(hkdfSync('sha256', exporter, clientId, info, KEY_BYTES));
}

export type OwnerRequest =
  | { readonly op: 'pair'; readonly name: string }
  | { readonly op: 'clients' }
  | { readonly op: 'revoke'; readonly id: string }
  | { readonly op: 'rename'; readonly id: string; readonly name: string }
  | { readonly op: 'set-password'; readonly accessKey: string; readonly keepPairings: boolean };

export interface ClientInfo {
  readonly id: string;
  readonly name: string;
  readonly createdMs: number;
  readonly lastUsedMs: number;
  /** True for the client that asked. */
  readonly self?: boolean;
}

export type OwnerAnswer =
  | { readonly ok: true; readonly clientId?: string; readonly clients?: readonly ClientInfo[]; readonly dropped?: number }
  | { readonly ok: false; readonly code: OwnerRefusal; readonly message: string };

/** Why the device refused an owner request. */
export type OwnerRefusal = 'not-paired' | 'unknown-client' | 'too-many' | 'bad-request' | 'internal';

const CLIENT_ID_HEX = /^[0-9a-f]{32}$/;

/** A name the owner gave a client: 1-64 printable characters, no control characters. */
export function checkClientName(name: unknown, field: string): string {
  if (typeof name !== 'string' || name.length < 1 || [...name].length > CLIENT_NAME_MAX_CHARS || /[\p{Cc}\p{Cf}]/u.test(name)) {
    throw new ProtocolError(field, `expected 1-${CLIENT_NAME_MAX_CHARS} printable characters`);
  }
  return name;
}

export function checkClientId(id: unknown, field: string): string {
  if (typeof id !== 'string' || !CLIENT_ID_HEX.test(id)) throw new ProtocolError(field, 'expected 32 lower-case hex digits');
  return id;
}

function only(o: Record<string, unknown>, keys: readonly string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new ProtocolError(`owner.${k}`, 'unknown field');
}

/** Parse one owner request line; every field checked, unknown fields rejected. */
export function parseOwnerRequest(line: string): OwnerRequest {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    throw new ProtocolError('owner', 'not JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ProtocolError('owner', 'not an object');
  const r = o as Record<string, unknown>;
  switch (r.op) {
    case 'pair':
      only(r, ['op', 'name']);
      return { op: 'pair', name: checkClientName(r.name, 'owner.name') };
    case 'clients':
      only(r, ['op']);
      return { op: 'clients' };
    case 'revoke':
      only(r, ['op', 'id']);
      return { op: 'revoke', id: checkClientId(r.id, 'owner.id') };
    case 'rename':
      only(r, ['op', 'id', 'name']);
      return { op: 'rename', id: checkClientId(r.id, 'owner.id'), name: checkClientName(r.name, 'owner.name') };
    case 'set-password': {
      only(r, ['op', 'accessKey', 'keepPairings']);
      const k = typeof r.accessKey === 'string' ? Buffer.from(r.accessKey, 'base64') : Buffer.alloc(0);
      if (k.length !== KEY_BYTES || k.toString('base64') !== r.accessKey)
        throw new ProtocolError('owner.accessKey', `expected base64 of ${KEY_BYTES} bytes`);
      if (typeof r.keepPairings !== 'boolean') throw new ProtocolError('owner.keepPairings', 'expected true or false');
      return { op: 'set-password', accessKey: r.accessKey as string, keepPairings: r.keepPairings };
    }
    default:
      throw new ProtocolError('owner.op', `unknown operation ${JSON.stringify(r.op)?.slice(0, 20)}`);
  }
}

/** Read one line (up to max bytes) from a stream, or fail at the deadline. */
export function readLine(stream: NodeJS.ReadableStream & { destroy(): void }, maxBytes: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => finish(new ProtocolError('owner', `no complete message within ${timeoutMs} ms`)), timeoutMs);
    const onData = (b: Buffer): void => {
      const nl = b.indexOf(0x0a);
      const part = nl >= 0 ? b.subarray(0, nl) : b;
      size += part.length;
      chunks.push(part);
      if (size > maxBytes) return finish(new ProtocolError('owner', `message longer than ${maxBytes} bytes`));
      if (nl >= 0) finish(null, Buffer.concat(chunks).toString('utf8'));
    };
    const onEnd = (): void => finish(new ProtocolError('owner', 'the peer closed before a complete message'));
    const onError = (err: Error): void => finish(err);
    function finish(err: Error | null, line?: string): void {
      clearTimeout(timer);
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      stream.removeListener('close', onEnd);
      stream.pause();
      if (err) reject(err);
      else resolve(line!);
    }
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    stream.resume();
  });
}
