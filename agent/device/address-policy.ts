/**
 * Which addresses a device may dial (P3). A device must not be usable as a scanner of its own
 * LAN or host by whoever controls the client address the server reports (a compromised server,
 * or a client lying about where it is): multicast, unspecified and broadcast are never dialled;
 * the rest depends on where the device reached its server (`serverAddress`, the peer address of
 * the request's TLS connection), because that tells a private deployment from an Internet one:
 *
 * - ordinary (public) addresses: always;
 * - private (10/8, 172.16/12, 192.168/16), CGN (100.64/10) and IPv6 ULA (fc00::/7): when the
 *   server itself is on such an address or on loopback (a private deployment, the loopback demo),
 *   or when `allowPrivate` says so; a server on the Internet has no business sending a device to
 *   its LAN;
 * - loopback: only with `allowLoopback` and a server on loopback (everything on one machine);
 * - link-local: only with `allowLinkLocal`.
 *
 * IPv6 (issue 14): an IPv4-mapped address (::ffff:a.b.c.d, either text form) is its IPv4 address.
 * An address that carries an IPv4 address to a translator is classed as that IPv4 address, since
 * the translator delivers the dial there: the NAT64 well-known prefix 64:ff9b::/96 (RFC 6052; so
 * 64:ff9b::10.0.0.1 is private and 64:ff9b::127.0.0.1 loopback) and 6to4 2002::/16 (RFC 3056). The
 * local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) is a private deployment's own: private.
 * Documentation prefixes (2001:db8::/32, 3fff::/20) and reserved ones (the deprecated
 * IPv4-compatible ::/96, the discard prefix 100::/64) belong to no real host: never dialled.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { ipv6Bytes, normalizeAddress } from '../protocol/address.js';

export type AddressClass =
  'loopback' | 'link-local' | 'private' | 'multicast' | 'unspecified' | 'broadcast' | 'documentation' | 'reserved' | 'ordinary' | 'invalid';

const lists: Record<Exclude<AddressClass, 'ordinary' | 'invalid'>, BlockList> = {
  loopback: new BlockList(),
  'link-local': new BlockList(),
  private: new BlockList(),
  multicast: new BlockList(),
  unspecified: new BlockList(),
  broadcast: new BlockList(),
  documentation: new BlockList(),
  reserved: new BlockList(),
};
lists.loopback.addSubnet('127.0.0.0', 8, 'ipv4');
lists.loopback.addAddress('::1', 'ipv6');
lists['link-local'].addSubnet('169.254.0.0', 16, 'ipv4');
lists['link-local'].addSubnet('fe80::', 10, 'ipv6');
lists.private.addSubnet('10.0.0.0', 8, 'ipv4');
lists.private.addSubnet('172.16.0.0', 12, 'ipv4');
lists.private.addSubnet('192.168.0.0', 16, 'ipv4');
lists.private.addSubnet('100.64.0.0', 10, 'ipv4');
lists.private.addSubnet('fc00::', 7, 'ipv6');
lists.private.addSubnet('64:ff9b:1::', 48, 'ipv6');
lists.multicast.addSubnet('224.0.0.0', 4, 'ipv4');
lists.multicast.addSubnet('ff00::', 8, 'ipv6');
lists.unspecified.addSubnet('0.0.0.0', 8, 'ipv4');
lists.unspecified.addAddress('::', 'ipv6');
lists.broadcast.addAddress('255.255.255.255', 'ipv4');
lists.documentation.addSubnet('2001:db8::', 32, 'ipv6');
lists.documentation.addSubnet('3fff::', 20, 'ipv6');
// After loopback and unspecified in the order of `lists`, so :: and ::1 keep their own classes.
lists.reserved.addSubnet('::', 96, 'ipv6');
lists.reserved.addSubnet('100::', 64, 'ipv6');

/** IPv6 prefixes whose addresses carry an IPv4 address (bytes 12-15, or 2-5 for 6to4) to a translator. */
const nat64 = new BlockList();
nat64.addSubnet('64:ff9b::', 96, 'ipv6');
const sixToFour = new BlockList();
sixToFour.addSubnet('2002::', 16, 'ipv6');

/** The IPv4 address a NAT64 or 6to4 address leads to, or null. */
export function embeddedIPv4(address: string): string | null {
  if (!isIPv6(address)) return null;
  const plain = address.replace(/%.*$/, '');
  const at = nat64.check(plain, 'ipv6') ? 12 : sixToFour.check(plain, 'ipv6') ? 2 : -1;
  if (at < 0) return null;
  return [...ipv6Bytes(plain).subarray(at, at + 4)].join('.');
}

export function classifyAddress(raw: string): AddressClass {
  const address = normalizeAddress(raw);
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : null;
  if (!family) return 'invalid';
  const carried = family === 'ipv6' ? embeddedIPv4(address) : null;
  if (carried !== null) {
    // 64:ff9b::8.8.8.8 is as ordinary as 8.8.8.8; 2002:0a00:0001:: leads to 10.0.0.1: private.
    const cls = classifyAddress(carried);
    return cls === 'broadcast' ? 'reserved' : cls;
  }
  for (const [cls, list] of Object.entries(lists)) {
    if (list.check(address, family)) return cls as AddressClass;
  }
  return 'ordinary';
}

export interface DialPolicy {
  readonly allowLoopback: boolean;
  readonly allowLinkLocal: boolean;
  /** Private, CGN and ULA addresses even when the server is on a public address. */
  readonly allowPrivate: boolean;
}

/** May the device dial `address`, having reached its server at `serverAddress`? */
export function mayDial(address: string, policy: DialPolicy, serverAddress: string): boolean {
  const server = classifyAddress(serverAddress);
  switch (classifyAddress(address)) {
    case 'ordinary':
      return true;
    case 'private':
      return policy.allowPrivate || server === 'private' || server === 'loopback';
    case 'loopback':
      return policy.allowLoopback && server === 'loopback';
    case 'link-local':
      return policy.allowLinkLocal;
    default:
      return false;
  }
}
