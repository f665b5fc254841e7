/**
 * What a LAN candidate may be (issue 14): a home LAN's private address (10/8, 172.16/12,
 * 192.168/16, IPv6 ULA fc00::/7), never the carrier's shared space (100.64/10: two phones on one
 * mobile carrier share it but no LAN), loopback, link-local, multicast or a public address; and,
 * to be dialled, inside the subnet of the local interface that reached the server, other than
 * that interface's own address and (IPv4) the subnet's network and broadcast addresses.
 * Every check carries the address family, so IPv6 candidates need no other encoding.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';

const lanSpace = new BlockList();
lanSpace.addSubnet('10.0.0.0', 8, 'ipv4');
lanSpace.addSubnet('172.16.0.0', 12, 'ipv4');
lanSpace.addSubnet('192.168.0.0', 16, 'ipv4');
lanSpace.addSubnet('fc00::', 7, 'ipv6');

export type Family = 'ipv4' | 'ipv6';

export function familyOf(address: string): Family | null {
  return isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : null;
}

/** A home LAN's private address (see above). */
export function isLanAddress(raw: string): boolean {
  const address = normalizeAddress(raw);
  const family = familyOf(address);
  return family !== null && lanSpace.check(address, family);
}

/** The interfaces to look in; os.networkInterfaces() unless a test gives its own. */
export type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>;

/** The interface address `local` (the local side of the connection to the server) belongs to. */
export function interfaceOf(local: string, interfaces: Interfaces = networkInterfaces()): NetworkInterfaceInfo | null {
  const address = normalizeAddress(local);
  for (const list of Object.values(interfaces)) {
    for (const i of list ?? []) if (!i.internal && normalizeAddress(i.address) === address && i.cidr) return i;
  }
  return null;
}

function ipv4Number(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/**
 * Why `candidate` may not be dialled from the interface holding `local`, or null when it may:
 * a LAN address of the same family, inside that interface's subnet, not the interface itself nor
 * (IPv4) the subnet's network or broadcast address.
 */
export function lanDialRefusal(candidate: Endpoint, local: string, interfaces?: Interfaces): string | null {
  const address = normalizeAddress(candidate.address);
  const family = familyOf(address);
  if (!family || !isLanAddress(address)) return `${address} is not a home LAN address`;
  const iface = interfaceOf(local, interfaces);
  if (!iface?.cidr) return `no local interface holds ${local}`;
  const [base, bitsText] = iface.cidr.split('/');
  const bits = Number(bitsText);
  if (familyOf(normalizeAddress(base!)) !== family) return `${address} is not of the interface's address family`;
  const subnet = new BlockList();
  subnet.addSubnet(normalizeAddress(base!), bits, family);
  if (!subnet.check(address, family)) return `${address} is outside the local subnet ${iface.cidr}`;
  if (address === normalizeAddress(iface.address)) return `${address} is this host's own address`;
  if (family === 'ipv4' && bits <= 30) {
    const host = ipv4Number(address) % 2 ** (32 - bits);
    if (host === 0 || host === 2 ** (32 - bits) - 1) return `${address} is the subnet's network or broadcast address`;
  }
  return null;
}

/** Our own LAN candidate: the local address that reached the server, with `port`, if it is a LAN address. */
export function ownLanCandidate(local: string | undefined, port: number | null | undefined): Endpoint | null {
  if (!local || !port || !isLanAddress(local)) return null;
  return { address: normalizeAddress(local), port };
}
