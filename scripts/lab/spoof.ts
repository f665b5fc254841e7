/**
 * Source address spoofing in a lab namespace: its UDP packets to one destination leave with
 * another host's address as their source (an nftables snat), as an attacker on a network without
 * egress filtering sends them. Answers go to the owner of that address, not back here: the
 * namespace keeps its own address for everything else (ARP included), so the lab's switch
 * delivers whatever the destination sends the spoofed address to the real host that has it.
 */
import { inNs } from './exec.js';

export interface SpoofOptions {
  /** The address the packets claim to come from (another lab host's). */
  readonly as: string;
  /** Only UDP packets to this address and port are spoofed. */
  readonly to: { readonly address: string; readonly port: number };
  /** The namespace's WAN interface; default eth0 (a WAN host). */
  readonly ifname?: string;
}

export const SPOOF_TABLE = 'lab_spoof';

export async function spoofSource(ns: string, o: SpoofOptions): Promise<void> {
  const ruleset = `
table ip ${SPOOF_TABLE} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${o.ifname ?? 'eth0'}" ip daddr ${o.to.address} udp dport ${o.to.port} snat to ${o.as}
  }
}
`;
  await inNs(ns, ['nft', '-f', '-'], ruleset);
  if (!(await inNs(ns, ['nft', 'list', 'tables'])).includes(`ip ${SPOOF_TABLE}`))
    throw new Error(`lab: spoofing rules did not load in ${ns}`);
}
