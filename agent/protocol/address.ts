/** Socket addresses on the wire: family byte (4 or 6), 4 or 16 address bytes, u16 port. */
import { isIPv6, SocketAddress } from 'node:net';
import { ProtocolError } from '../common/errors.js';
import type { ByteReader, ByteWriter } from './bytes.js';

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * An IPv4-mapped IPv6 address ("::ffff:1.2.3.4", also written "::ffff:102:304" or in full) -> "1.2.3.4",
 * so policy, rate limits and equality see one form of an IPv4 address. A dual-stack socket reports
 * IPv4 peers in the mapped form.
 */
export function normalizeAddress(address: string): string {
  // Most addresses are plain IPv4: skip the work for anything not starting with ':' or '0'.
  const c0 = address.charCodeAt(0);
  if (c0 !== 0x3a && c0 !== 0x30) return address;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m) return m[1]!;
  if (!/ffff/i.test(address) || !isIPv6(address)) return address;
  const b = ipv6Bytes(address.replace(/%.*$/, ''));
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return address;
  return b[10] === 0xff && b[11] === 0xff ? `${b[12]}.${b[13]}.${b[14]}.${b[15]}` : address;
}

/**
 * A dotted-quad IPv4 address in the form Node writes it (no leading zeros) as a u32, or -1 for
 * anything else (not IPv4, or not in that form). One pass, no pattern: it runs for every registration.
 */
export function ipv4ToU32(a: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // a leading zero
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else return -1;
  }
  if (digits === 0 || dots !== 3) return -1;
  return n * 256 + part;
}

/** The 16 bytes of an IPv6 address in any valid text form ("::" and an embedded IPv4 expanded). */
export function ipv6Bytes(address: string): Buffer {
  // Expand "::" and embedded IPv4, then pack 8 groups.
  let addr = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(addr);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    addr = addr.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function writeEndpoint(w: ByteWriter, ep: Endpoint): void {
  const address = normalizeAddress(ep.address);
  const v4 = ipv4ToU32(address);
  if (v4 >= 0) {
    w.u8(4).u32(v4);
  } else if (isIPv6(address)) {
    w.u8(6).bytes(ipv6Bytes(address.replace(/%.*$/, '')));
  } else {
    throw new RangeError(`not an IP address: ${address}`);
  }
  w.u16(ep.port);
}

export function readEndpoint(r: ByteReader, field: string): Endpoint {
  const family = r.u8(`${field}.family`);
  let address: string;
  if (family === 4) {
    address = [...r.bytes(4, `${field}.address`)].join('.');
  } else if (family === 6) {
    const b = r.bytes(16, `${field}.address`);
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    // Let Node produce the canonical compressed form.
    address = new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
  } else {
    throw new ProtocolError(`${field}.family`, `expected 4 or 6, found ${family}`);
  }
  const port = r.u16(`${field}.port`);
  return { address: normalizeAddress(address), port };
}

export function formatEndpoint(ep: Endpoint): string {
  return isIPv6(ep.address) ? `[${ep.address}]:${ep.port}` : `${ep.address}:${ep.port}`;
}
