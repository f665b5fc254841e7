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
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { normalizeAddress } from '../protocol/address.js';

export type AddressClass = 'loopback' | 'link-local' | 'private' | 'multicast' | 'unspecified' | 'broadcast' | 'ordinary' | 'invalid';

const lists: Record<Exclude<AddressClass, 'ordinary' | 'invalid'>, BlockList> = {
  loopback: new BlockList(),
  'link-local': new BlockList(),
  private: new BlockList(),
  multicast: new BlockList(),
  unspecified: new BlockList(),
  broadcast: new BlockList(),
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
lists.multicast.addSubnet('224.0.0.0', 4, 'ipv4');
lists.multicast.addSubnet('ff00::', 8, 'ipv6');
lists.unspecified.addSubnet('0.0.0.0', 8, 'ipv4');
lists.unspecified.addAddress('::', 'ipv6');
lists.broadcast.addAddress('255.255.255.255', 'ipv4');

export function classifyAddress(raw: string): AddressClass {
  const address = normalizeAddress(raw);
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : null;
  if (!family) return 'invalid';
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
