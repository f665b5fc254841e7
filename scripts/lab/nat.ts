/**
 * NAT behaviours as nftables rulesets for a router namespace with interfaces lan0 and wan0
 * (lab notes: "NAT behaviours as nftables rules"). Each returns the text for `nft -f -`.
 */
export const NAT_KINDS = ['none', 'full-cone', 'port-restricted', 'symmetric', 'double'] as const;
export type NatKind = (typeof NAT_KINDS)[number];

export interface NatRules {
  readonly lanCidr: string;
  readonly wanAddress: string;
  /** Percentage of packets dropped at random on the WAN link, both ways (0 = none). */
  readonly lossPercent: number;
  readonly kind: 'full-cone' | 'port-restricted' | 'symmetric';
}

export function natRuleset(r: NatRules): string {
  const masq = r.kind === 'symmetric' ? 'masquerade fully-random' : 'masquerade';
  const loss = r.lossPercent > 0 ? `    iifname "wan0" numgen random mod 100 < ${r.lossPercent} counter drop\n    oifname "wan0" numgen random mod 100 < ${r.lossPercent} counter drop\n` : '';
  const fullCone = r.kind === 'full-cone';
  return `
table ip lab_nat {
${fullCone ? '  map fc { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 30s; }\n' : ''}
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
${fullCone ? `    iifname "wan0" ip daddr ${r.wanAddress} meta l4proto udp dnat to udp dport map @fc\n` : ''}  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" ip saddr ${r.lanCidr} ${masq}
  }
  chain input {
    # Stealth, as most home routers: an unsolicited packet to the router itself is dropped, not
    # answered with a reset. (A reset would refuse a hole-punch SYN that arrives a moment early.)
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
${loss}    ct state established,related accept
${fullCone ? `    iifname "lan0" oifname "wan0" meta l4proto udp update @fc { udp sport : ip saddr }\n    ct status dnat accept\n` : '    ct status dnat accept\n'}    iifname "lan0" oifname "wan0" accept
  }
}
`;
}

/** Loss on a host's own WAN link (for hosts without a router: public hosts). */
export function lossRuleset(lossPercent: number, ifname: string): string {
  return `
table inet lab_loss {
  chain input { type filter hook input priority filter; policy accept; iifname "${ifname}" numgen random mod 100 < ${lossPercent} counter drop; }
  chain output { type filter hook output priority filter; policy accept; oifname "${ifname}" numgen random mod 100 < ${lossPercent} counter drop; }
}
`;
}

/** Packets the loss rules of a namespace have dropped so far (their nftables counters). */
export function droppedPackets(rulesetListing: string): number {
  return [...rulesetListing.matchAll(/counter packets (\d+) bytes \d+ drop/g)].reduce((n, m) => n + Number(m[1]), 0);
}
