/**
 * A host on the lab's WAN switch with one or many public addresses on its one interface: a crowd
 * of strangers (each connection bound to one of its addresses, as distinct to the server as
 * hosts across the Internet), a victim, an attacker. It is a namespace of the lab, removed with
 * it, and the lab's isolation is checked again once it is plugged in.
 */
import { run } from './exec.js';
import { assertIsolated, plugWan, type Lab } from './topology.js';

/** Linux interface names are at most 15 bytes; the bridge port's name is derived from the role. */
const IFNAME_MAX_BYTES = 15;
/** One interface can hold many more, but a lab host needs no more than this. */
export const WAN_HOST_MAX_ADDRESSES = 1000;

export interface WanHostOptions {
  /** Short name: the namespace is `<lab id>-<role>`, its bridge port `w<role>`. */
  readonly role: string;
  /** Public IPv4 addresses (each a /32 on eth0); the first is the one it uses by default. */
  readonly addresses: readonly string[];
}

export interface WanHost {
  readonly ns: string;
  readonly addresses: readonly string[];
}

export async function addWanHost(lab: Lab, o: WanHostOptions): Promise<WanHost> {
  if (!/^[a-z0-9]+$/.test(o.role) || `w${o.role}`.length > IFNAME_MAX_BYTES) {
    throw new Error(`lab: WAN host role must be 1-${IFNAME_MAX_BYTES - 1} of a-z 0-9, found ${JSON.stringify(o.role)}`);
  }
  if (o.addresses.length === 0 || o.addresses.length > WAN_HOST_MAX_ADDRESSES) {
    throw new Error(`lab: a WAN host needs 1-${WAN_HOST_MAX_ADDRESSES} addresses, found ${o.addresses.length}`);
  }
  const ns = await lab.addNamespace(o.role);
  await plugWan(lab, ns, `w${o.role}`, 'eth0', o.addresses[0]!);
  if (o.addresses.length > 1) {
    // One `ip -batch` for the rest: 50 separate `ip` runs would take seconds.
    await run(
      ['ip', '-n', ns, '-batch', '-'],
      o.addresses
        .slice(1)
        .map((a) => `addr add ${a}/32 dev eth0\n`)
        .join(''),
    );
  }
  await assertIsolated(lab);
  return { ns, addresses: [...o.addresses] };
}

/** `count` consecutive addresses from `first` (e.g. 45.33.0.10, .11, ...), for a crowd of hosts. */
export function addressRange(first: string, count: number): string[] {
  const parts = first.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${first}`);
  const base = ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = base + i;
    if (n > 0xffffffff || (n & 0xff) === 0 || (n & 0xff) === 255)
      throw new Error(`address range from ${first} (${count}) crosses a .0 or .255 address`);
    out.push([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.'));
  }
  return out;
}
