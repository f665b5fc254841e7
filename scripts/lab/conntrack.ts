/** Read a lab router's NAPT table (conntrack) as the patent's figures show it: LAN side and WAN side. */
import { inNs } from './exec.js';

export interface Translation {
  readonly proto: string;
  /** The first packet as it arrived at the router (from the LAN for outbound, from the WAN for inbound). */
  readonly before: { readonly src: string; readonly dst: string };
  /** The same packet as the router sent it on, translated (Fig. 7A -> 7B, 8C -> 8D). */
  readonly after: { readonly src: string; readonly dst: string };
}

export async function translations(routerNs: string, proto: 'udp' | 'tcp'): Promise<Translation[]> {
  const out = await inNs(routerNs, ['conntrack', '-L', '-p', proto]).catch(() => '');
  const rows: Translation[] = [];
  for (const line of out.split('\n')) {
    const kv = [...line.matchAll(/(src|dst|sport|dport)=(\S+)/g)].map((m) => m[2]!);
    if (kv.length < 8) continue;
    const [oSrc, oDst, oSport, oDport, rSrc, rDst, rSport, rDport] = kv;
    // The reply direction, reversed, is the original packet as seen on the other side of the NAT.
    rows.push({
      proto,
      before: { src: `${oSrc}:${oSport}`, dst: `${oDst}:${oDport}` },
      after: { src: `${rDst}:${rDport}`, dst: `${rSrc}:${rSport}` },
    });
  }
  return rows;
}
