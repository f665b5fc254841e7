/**
 * The `peerlink://` URI printed as a QR code on a device's label, for a phone app to scan:
 *
 *   peerlink://connect?v=1&id=<equipment id>&pw=<password, normalised>[&server=<host>:<tls port>]
 *
 * It holds exactly what the label shows in print (ID and password), plus, when the factory knows
 * it, the rendezvous server. Whoever can read the label can connect, with or without the QR code;
 * the code only saves typing. The password travels normalised (no dashes, upper case), which is
 * what deriveAccessKey uses anyway.
 */
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { EQUIPMENT_ID_PATTERN } from './constants.js';
import { normalizePassword } from './keys.js';

export const CONNECT_URI_SCHEME = 'peerlink:';
export const CONNECT_URI_VERSION = 1;

export interface ConnectUri {
  readonly equipmentId: string;
  readonly password: string;
  /** "host:port" of the rendezvous server's TLS port, when known. */
  readonly server?: string;
}

function invalid(message: string): PeerlinkError {
  return new PeerlinkError(ErrorCodes.OPTIONS_INVALID, `connect URI: ${message}`);
}

export function formatConnectUri(c: ConnectUri): string {
  if (!EQUIPMENT_ID_PATTERN.test(c.equipmentId)) throw invalid(`bad equipment id ${JSON.stringify(c.equipmentId)}`);
  const pw = normalizePassword(c.password);
  if (pw === '') throw invalid('empty password');
  const q = new URLSearchParams({ v: String(CONNECT_URI_VERSION), id: c.equipmentId, pw });
  if (c.server !== undefined) q.set('server', c.server);
  return `peerlink://connect?${q.toString()}`;
}

export function parseConnectUri(text: string): ConnectUri {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid('not a URI');
  }
  if (url.protocol !== CONNECT_URI_SCHEME || url.host !== 'connect') throw invalid('expected peerlink://connect?...');
  const v = url.searchParams.get('v');
  if (v !== String(CONNECT_URI_VERSION)) throw invalid(`unsupported version ${JSON.stringify(v)}`);
  const id = url.searchParams.get('id') ?? '';
  if (!EQUIPMENT_ID_PATTERN.test(id)) throw invalid(`id: bad equipment id ${JSON.stringify(id)}`);
  const pw = normalizePassword(url.searchParams.get('pw') ?? '');
  if (pw === '') throw invalid('pw: missing');
  const server = url.searchParams.get('server');
  return Object.freeze({ equipmentId: id, password: pw, ...(server ? { server } : {}) });
}
