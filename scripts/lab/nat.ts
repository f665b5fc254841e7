/**
 * NAT behaviours as nftables rulesets for a router namespace with interfaces lan0 and wan0
 * (lab notes: "NAT behaviours as nftables rules"). Each returns the text for `nft -f -`.
 */
export const NAT_KINDS = ['none', 'full-cone', 'port-restricted', 'symmetric', 'double'] as const;
export type NatKind = (typeof NAT_KINDS)[number];

/**
 * What a router does with an unsolicited packet to itself from the WAN: `drop` (stealth, most home
 * routers) or `reset` (a TCP SYN answered with a reset, as OpenWrt's default WAN zone and the ISP
 * routers built on it do; other protocols still dropped).
 */
export const INBOUND_KINDS = ['drop', 'reset'] as const;
export type InboundKind = (typeof INBOUND_KINDS)[number];

export interface NatRules {
  readonly lanCidr: string;
  readonly wanAddress: string;
  /** Percentage of packets dropped at random on the WAN link, both ways (0 = none). */
  readonly lossPercent: number;
  readonly kind: 'full-cone' | 'port-restricted' | 'symmetric';
  /** Default drop. */
  readonly inbound?: InboundKind;
  /**
   * Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8; a CGN MUST, RFC 6888 REQ-9): a LAN host reaching
   * another LAN host's mapping through the router's public address. Built like the full cone's map:
   * the masqueraded source port (kept by endpoint-independent masquerade) to the LAN address,
   * learnt in forward, used in prerouting for packets from the LAN to the public address.
   */
  readonly hairpin?: boolean;
}

export function natRuleset(r: NatRules): string {
  const masq = r.kind === 'symmetric' ? 'masquerade fully-random' : 'masquerade';
  const loss =
    r.lossPercent > 0
      ? `    iifname "wan0" numgen random mod 100 < ${r.lossPercent} counter drop\n    oifname "wan0" numgen random mod 100 < ${r.lossPercent} counter drop\n`
      : '';
  const fullCone = r.kind === 'full-cone';
  const hairpin = r.hairpin === true && r.kind !== 'symmetric';
  return `
table ip lab_nat {
${fullCone ? '  map fc { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 30s; }\n' : ''}${hairpin ? '  map hpt { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 300s; }\n  map hpu { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 300s; }\n' : ''}
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
${fullCone ? `    iifname "wan0" ip daddr ${r.wanAddress} meta l4proto udp dnat to udp dport map @fc\n` : ''}${hairpin ? `    iifname "lan0" ip daddr ${r.wanAddress} meta l4proto tcp dnat to tcp dport map @hpt\n    iifname "lan0" ip daddr ${r.wanAddress} meta l4proto udp dnat to udp dport map @hpu\n` : ''}  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" ip saddr ${r.lanCidr} ${masq}
${hairpin ? `    oifname "lan0" ip saddr ${r.lanCidr} ct status dnat snat to ${r.wanAddress}\n` : ''}  }
  chain input {
    # drop: stealth, as most home routers: an unsolicited packet to the router itself is dropped.
    # reset: a SYN is refused with a reset (OpenWrt's WAN zone), which refuses a hole-punch SYN
    # that arrives a moment before the peer's own has left.
    type filter hook input priority filter; policy accept;
${r.inbound === 'reset' ? '    iifname "wan0" ct state new meta l4proto tcp counter reject with tcp reset\n' : ''}    iifname "wan0" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
${loss}    ct state established,related accept
${fullCone ? `    iifname "lan0" oifname "wan0" meta l4proto udp update @fc { udp sport : ip saddr }\n` : ''}${hairpin ? `    iifname "lan0" oifname "wan0" meta l4proto tcp update @hpt { tcp sport : ip saddr }\n    iifname "lan0" oifname "wan0" meta l4proto udp update @hpu { udp sport : ip saddr }\n` : ''}    ct status dnat accept
    iifname "lan0" oifname "wan0" accept
    # A bridged LAN (several hosts on one router): traffic between them, and hairpinned traffic.
    iifname "lan0" oifname "lan0" accept
  }
}
`;
}

/**
 * A home router on IPv6 (RFC 6092): nothing is translated, but the LAN is firewalled inbound,
 * statefully. Forward: replies (established, related) accepted; the LAN's own outbound accepted;
 * the ICMPv6 errors a path needs (RFC 4890: unreachable, too big, time exceeded, parameter
 * problem) accepted; anything unsolicited from the WAN to the LAN dropped and counted (REC-11,
 * REC-48; `unsolicited_in`). Input:
 * neighbour discovery (without it the router is unreachable on the link), the rest from the WAN
 * dropped, or a SYN reset (`inbound: 'reset'`, as OpenWrt's WAN zone).
 */
export function firewall6Ruleset(r: { readonly inbound: InboundKind }): string {
  return `
table ip6 lab_fw6 {
  counter unsolicited_in { }
  chain input {
    type filter hook input priority filter; policy accept;
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept
    iifname "wan0" ct state established,related accept
${r.inbound === 'reset' ? '    iifname "wan0" ct state new meta l4proto tcp counter reject with tcp reset\n' : ''}    iifname "wan0" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept
    iifname "lan0" oifname "wan0" accept
    iifname "lan0" oifname "lan0" accept
    iifname "wan0" oifname "lan0" counter name unsolicited_in drop
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
