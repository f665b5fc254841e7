/**
 * Which addresses a device may dial (P3). A device must not be usable as a scanner of its own
 * LAN or host: loopback, link-local, multicast, unspecified and broadcast addresses are refused
 * unless its settings allow loopback or link-local explicitly (the loopback demo and tests do).
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { normalizeAddress } from '../protocol/address.js';

export type AddressClass = 'loopback' | 'link-local' | 'multicast' | 'unspecified' | 'broadcast' | 'ordinary' | 'invalid';

const lists: Record<Exclude<AddressClass, 'ordinary' | 'invalid'>, BlockList> = {
  loopback: new BlockList(),
  'link-local': new BlockList(),
  multicast: new BlockList(),
  unspecified: new BlockList(),
  broadcast: new BlockList(),
};
lists.loopback.addSubnet('127.0.0.0', 8, 'ipv4');
lists.loopback.addAddress('::1', 'ipv6');
lists['link-local'].addSubnet('169.254.0.0', 16, 'ipv4');
lists['link-local'].addSubnet('fe80::', 10, 'ipv6');
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
}

export function mayDial(address: string, policy: DialPolicy): boolean {
  const cls = classifyAddress(address);
  return cls === 'ordinary' || (cls === 'loopback' && policy.allowLoopback) || (cls === 'link-local' && policy.allowLinkLocal);
}
