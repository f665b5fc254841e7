/**
 * The patent's Fig. 1 as Linux network namespaces: a WAN switch (a bridge) with the rendezvous
 * server on it, and on each side either a public host, or a LAN behind a NAPT router (optionally
 * behind a carrier-grade NAT too). Names are unique per run; destroy() removes everything,
 * and nothing in it can reach beyond its own veth links (checked by assertIsolated).
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { inNs, run } from './exec.js';
import { firewall6Ruleset, lossRuleset, natRuleset, type InboundKind, type NatKind } from './nat.js';

/** The patent's example addresses (ordinary unicast: miniupnpd refuses reserved ones). */
export const ADDR = Object.freeze({
  server: '130.74.23.6',
  /** A second rendezvous server node (multi-node labs), on the same WAN. */
  server2: '130.74.23.7',
  routerA: '4.17.168.2',
  routerB: '202.204.16.13',
  routerBRenumbered: '202.204.16.14',
  cgnA: '61.204.0.1',
  cgnB: '61.205.0.1',
  publicClient: '8.117.12.109',
  publicDevice: '133.1.1.3',
  lanCidr: '192.168.1.0/24',
  lanRouter: '192.168.1.1',
  client: '192.168.1.11',
  device: '192.168.1.3',
  cgnLanCidr: '100.64.0.0/24',
  cgnInside: '100.64.0.1',
  cgnOutsideRouter: '100.64.0.2',
  /** Router B's address inside a CGN that both homes share (`homes: 'shared-cgn'`). */
  cgnOutsideRouterB: '100.64.0.3',
});

/**
 * IPv6 (issue 14), in a lab built with `ipv6: true`: one /64 for the WAN segment, and a /64 per home
 * that its router routes (no translation: a home router on IPv6 only firewalls, RFC 6092).
 * Ordinary global unicast, not the documentation prefix 2001:db8::/32: devices never dial that
 * (agent/device/address-policy.ts). Safe only because the lab has no route off the machine.
 */
export const ADDR6 = Object.freeze({
  wanPrefix: '2a0a:e5c0:0:1::/64',
  server: '2a0a:e5c0:0:1::6',
  server2: '2a0a:e5c0:0:1::7',
  routerA: '2a0a:e5c0:0:1::a',
  routerB: '2a0a:e5c0:0:1::b',
  publicClient: '2a0a:e5c0:0:1::109',
  publicDevice: '2a0a:e5c0:0:1::3',
  lanA: '2a0a:e5c0:100:a::/64',
  lanARouter: '2a0a:e5c0:100:a::1',
  client: '2a0a:e5c0:100:a::11',
  lanB: '2a0a:e5c0:200:b::/64',
  lanBRouter: '2a0a:e5c0:200:b::1',
  device: '2a0a:e5c0:200:b::3',
  /** The client on router B's LAN (`homes: 'same-lan'`). */
  clientOnB: '2a0a:e5c0:200:b::11',
  /** Inside a shared carrier-grade NAT (`homes: 'shared-cgn'`): the ISP routes each home's /64 natively. */
  cgnInsidePrefix: '2a0a:e5c0:0:c::/64',
  cgnInside: '2a0a:e5c0:0:c::1',
  cgnRouterA: '2a0a:e5c0:0:c::2',
  cgnRouterB: '2a0a:e5c0:0:c::3',
});

/**
 * A host's address families: IPv4 only (the default), IPv6 only, or both; `dual4` is both with IPv4
 * preferred for the server's name (its own /etc/gai.conf: a host whose resolver or settings pick
 * IPv4, so it reaches the server over IPv4 though it has IPv6).
 */
export const STACKS = ['ipv4', 'ipv6', 'dual', 'dual4'] as const;
export type Stack = (typeof STACKS)[number];

/**
 * Where client and device live: `separate` homes (the patent's Fig. 1), the `same-lan` (both on
 * router B's LAN: the owner's phone on the home Wi-Fi), or two homes behind one `shared-cgn`
 * (carrier-grade NAT 61.205.0.1, which hairpins as RFC 6888 REQ-9 requires; home routers
 * port-restricted, both LANs 192.168.1.0/24).
 */
export const HOMES = ['separate', 'same-lan', 'shared-cgn'] as const;
export type Homes = (typeof HOMES)[number];

export interface SideSpec {
  readonly nat: NatKind;
  /** UDP conntrack timeouts in the router(s), seconds (unreplied and stream). */
  readonly udpTimeoutS?: number;
  readonly lossPercent?: number;
  /** Unsolicited packets to the router from the WAN: dropped (default) or a SYN answered with a reset. */
  readonly inbound?: InboundKind;
  /** The router hairpins (reaching its own public address from the LAN); default off, as most home routers. */
  readonly hairpin?: boolean;
  /** The host's address families (needs a lab with `ipv6`); default ipv4. */
  readonly stack?: Stack;
}

export interface Side {
  /** Namespace of the host (client or device). */
  readonly host: string;
  readonly hostAddress: string;
  /** Namespace of the home router, if any (none for a public host). */
  readonly router: string | null;
  /** The router's (or public host's) address on the WAN. */
  readonly publicAddress: string;
  readonly cgn: string | null;
  /** The host's global IPv6 address (a lab with `ipv6`, a host with IPv6); its own, no translation. */
  readonly hostAddress6?: string;
}

export interface Lab {
  readonly id: string;
  readonly wan: string;
  readonly server: string;
  readonly client: Side;
  readonly device: Side;
  /** The second server node's namespace, when asked for (`secondServer`). */
  readonly server2?: string;
  /** Built with IPv6 on the WAN and the home LANs (the server is dual stack). */
  readonly ipv6: boolean;
  readonly namespaces: readonly string[];
  /**
   * One more namespace of this lab, `<lab id>-<suffix>` (loopback up, nothing else), removed with
   * the rest by destroy(). Whatever is plugged into it must keep assertIsolated passing.
   */
  addNamespace(suffix: string): Promise<string>;
  /** Give router B a new WAN address (the patent's PPP/DHCP re-addressing), dropping its mappings. */
  renumberDeviceRouter(address: string): Promise<void>;
  destroy(): Promise<void>;
}

export const LAB_PREFIX = 'pllab';

async function addNs(ns: string, created: string[], ipv6 = false): Promise<void> {
  await run(['ip', 'netns', 'add', ns]);
  created.push(ns);
  // IPv6 lab: no duplicate address detection on any interface made from now on, link-local ones
  // included: a tentative address delays neighbour discovery, and with it the first packets, by ~1 s.
  if (ipv6) await inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  await inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
}

/** A veth pair with one end in each namespace (never in the host's own namespace). */
async function link(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
  await run(['ip', '-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
  await run(['ip', '-n', nsA, 'link', 'set', ifA, 'up']);
  await run(['ip', '-n', nsB, 'link', 'set', ifB, 'up']);
}

/** Plug namespace `ns` into the WAN switch as interface `ifname` with a public /32. */
export async function plugWan(
  lab: { wan: string },
  ns: string,
  port: string,
  ifname: string,
  address: string,
  address6?: string,
): Promise<void> {
  await link(lab.wan, port, ns, ifname);
  await run(['ip', '-n', lab.wan, 'link', 'set', port, 'master', 'br0']);
  await run(['ip', '-n', ns, 'addr', 'add', `${address}/32`, 'dev', ifname]);
  // Every WAN host is on one segment: reach any address directly on the link.
  await run(['ip', '-n', ns, 'route', 'add', 'default', 'dev', ifname]);
  if (address6) await addr6(ns, ifname, `${address6}/64`);
}

/**
 * An IPv6 address usable at once: no duplicate address detection (`nodad`), which would hold it
 * "tentative" (unusable) for a second or more (lab notes).
 */
async function addr6(ns: string, ifname: string, cidr: string): Promise<void> {
  await inNs(ns, ['sysctl', '-qw', `net.ipv6.conf.${ifname}.accept_dad=0`]).catch(() => undefined);
  await run(['ip', '-n', ns, '-6', 'addr', 'add', cidr, 'dev', ifname, 'nodad']);
}

/** Every WAN namespace reaches each home's /64 through that home's router (static routes: an ISP's). */
async function routeHomes6(ns: string, ifname: string, own: string | null): Promise<void> {
  for (const [prefix, via] of [
    [ADDR6.lanA, ADDR6.routerA],
    [ADDR6.lanB, ADDR6.routerB],
  ] as const) {
    if (prefix !== own) await run(['ip', '-n', ns, '-6', 'route', 'add', prefix, 'via', via, 'dev', ifname]);
  }
}

async function nft(ns: string, ruleset: string): Promise<void> {
  await inNs(ns, ['nft', '-f', '-'], ruleset);
  // A router whose rules silently did not load would be no NAT at all: check they are there.
  const table = /table (\w+ \w+)/.exec(ruleset)?.[1];
  if (table && !(await inNs(ns, ['nft', 'list', 'tables'])).includes(table)) {
    throw new Error(`lab: nftables table ${table} did not load in ${ns}`);
  }
}

/** A home's LAN: the router's lan0 to the host's eth0, with IPv4 on it unless the host is IPv6 only. */
async function homeLan(routerNs: string, hostNs: string, hostAddress: string, stack: string): Promise<void> {
  await link(routerNs, 'lan0', hostNs, 'eth0');
  await run(['ip', '-n', routerNs, 'addr', 'add', `${ADDR.lanRouter}/24`, 'dev', 'lan0']);
  if (stack !== 'ipv6') {
    await run(['ip', '-n', hostNs, 'addr', 'add', `${hostAddress}/24`, 'dev', 'eth0']);
    await run(['ip', '-n', hostNs, 'route', 'add', 'default', 'via', ADDR.lanRouter]);
  }
}

async function router(ns: string, udpTimeoutS: number | undefined, ipv6 = false): Promise<void> {
  await inNs(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  if (ipv6) await inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  if (udpTimeoutS !== undefined) {
    await inNs(ns, ['sysctl', '-qw', `net.netfilter.nf_conntrack_udp_timeout=${udpTimeoutS}`]);
    await inNs(ns, ['sysctl', '-qw', `net.netfilter.nf_conntrack_udp_timeout_stream=${udpTimeoutS}`]);
  }
}

async function buildSide(
  lab: { id: string; wan: string; ipv6: boolean },
  side: 'a' | 'b',
  spec: SideSpec,
  created: string[],
): Promise<Side> {
  const hostNs = `${lab.id}-${side === 'a' ? 'client' : 'device'}`;
  await addNs(hostNs, created, lab.ipv6);
  const loss = spec.lossPercent ?? 0;
  const stack = spec.stack ?? 'ipv4';
  if (stack !== 'ipv4' && !lab.ipv6) throw new Error(`lab: a ${stack} host needs a lab built with ipv6`);
  const has6 = stack !== 'ipv4';
  if (spec.nat === 'none') {
    const address = side === 'a' ? ADDR.publicClient : ADDR.publicDevice;
    const address6 = side === 'a' ? ADDR6.publicClient : ADDR6.publicDevice;
    await plugWan(lab, hostNs, `h${side}`, 'eth0', address, has6 ? address6 : undefined);
    if (has6) await routeHomes6(hostNs, 'eth0', null);
    if (stack === 'ipv6') await run(['ip', '-n', hostNs, 'addr', 'del', `${address}/32`, 'dev', 'eth0']);
    if (loss > 0) await nft(hostNs, lossRuleset(loss, 'eth0'));
    return {
      host: hostNs,
      hostAddress: address,
      router: null,
      publicAddress: address,
      cgn: null,
      ...(has6 ? { hostAddress6: address6 } : {}),
    };
  }
  const routerNs = `${lab.id}-router${side}`;
  await addNs(routerNs, created, lab.ipv6);
  const hostAddress = side === 'a' ? ADDR.client : ADDR.device;
  await homeLan(routerNs, hostNs, hostAddress, stack);
  await router(routerNs, spec.udpTimeoutS, lab.ipv6);
  const lan6 =
    side === 'a'
      ? { prefix: ADDR6.lanA, router: ADDR6.lanARouter, host: ADDR6.client }
      : { prefix: ADDR6.lanB, router: ADDR6.lanBRouter, host: ADDR6.device };
  if (lab.ipv6) {
    if (spec.nat === 'double') throw new Error('lab: IPv6 homes behind a carrier-grade NAT are not built (a CGN is IPv4 only)');
    // The home's /64 on the LAN; the router firewalls it (RFC 6092), translating nothing.
    await addr6(routerNs, 'lan0', `${lan6.router}/64`);
    await nft(routerNs, firewall6Ruleset({ inbound: spec.inbound ?? 'drop' }));
    if (has6) {
      await addr6(hostNs, 'eth0', `${lan6.host}/64`);
      await run(['ip', '-n', hostNs, '-6', 'route', 'add', 'default', 'via', lan6.router, 'dev', 'eth0']);
    }
  }
  let wanAddress: string = side === 'a' ? ADDR.routerA : ADDR.routerB;
  let cgnNs: string | null = null;
  if (spec.nat === 'double') {
    // A carrier-grade NAT in front of the home router: home router WAN is 100.64.0.2.
    cgnNs = `${lab.id}-cgn${side}`;
    await addNs(cgnNs, created);
    const cgnAddress = side === 'a' ? ADDR.cgnA : ADDR.cgnB;
    await link(cgnNs, 'lan0', routerNs, 'wan0');
    await run(['ip', '-n', cgnNs, 'addr', 'add', `${ADDR.cgnInside}/24`, 'dev', 'lan0']);
    await run(['ip', '-n', routerNs, 'addr', 'add', `${ADDR.cgnOutsideRouter}/24`, 'dev', 'wan0']);
    await run(['ip', '-n', routerNs, 'route', 'add', 'default', 'via', ADDR.cgnInside]);
    await plugWan(lab, cgnNs, `c${side}`, 'wan0', cgnAddress);
    await router(cgnNs, spec.udpTimeoutS);
    await nft(
      cgnNs,
      natRuleset({ kind: 'port-restricted', lanCidr: ADDR.cgnLanCidr, wanAddress: cgnAddress, lossPercent: loss, ...behaviour(spec) }),
    );
    await nft(
      routerNs,
      natRuleset({ kind: 'port-restricted', lanCidr: ADDR.lanCidr, wanAddress: ADDR.cgnOutsideRouter, lossPercent: 0, ...behaviour(spec) }),
    );
    wanAddress = cgnAddress;
  } else {
    await plugWan(lab, routerNs, `r${side}`, 'wan0', wanAddress, lab.ipv6 ? (side === 'a' ? ADDR6.routerA : ADDR6.routerB) : undefined);
    if (lab.ipv6) await routeHomes6(routerNs, 'wan0', lan6.prefix);
    await nft(routerNs, natRuleset({ kind: spec.nat, lanCidr: ADDR.lanCidr, wanAddress, lossPercent: loss, ...behaviour(spec) }));
  }
  return {
    host: hostNs,
    hostAddress,
    router: routerNs,
    publicAddress: wanAddress,
    cgn: cgnNs,
    ...(lab.ipv6 && has6 ? { hostAddress6: lan6.host } : {}),
  };
}

function behaviour(spec: SideSpec): { inbound?: InboundKind; hairpin?: boolean } {
  return { ...(spec.inbound ? { inbound: spec.inbound } : {}), ...(spec.hairpin ? { hairpin: true } : {}) };
}

/** A bridge named lan0 in `routerNs` (the NAT rules' LAN interface) with `cidrAddress` on it. */
async function lanBridge(routerNs: string, cidrAddress: string): Promise<void> {
  await run(['ip', '-n', routerNs, 'link', 'add', 'lan0', 'type', 'bridge']);
  await run(['ip', '-n', routerNs, 'link', 'set', 'lan0', 'up']);
  await run(['ip', '-n', routerNs, 'addr', 'add', cidrAddress, 'dev', 'lan0']);
}

/**
 * A host namespace on a router's bridged LAN, as interface eth0 with `address`/24 and, given
 * `v6` (an IPv6 lab, a host with IPv6), that address /64 with a default route via the router.
 */
async function lanHost(
  routerNs: string,
  port: string,
  hostNs: string,
  address: string,
  gateway: string,
  created: string[],
  v6?: { stack: Stack; address: string; gateway: string },
): Promise<void> {
  await addNs(hostNs, created, v6 !== undefined);
  await link(routerNs, port, hostNs, 'eth0');
  await run(['ip', '-n', routerNs, 'link', 'set', port, 'master', 'lan0']);
  if (v6?.stack !== 'ipv6') {
    await run(['ip', '-n', hostNs, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    await run(['ip', '-n', hostNs, 'route', 'add', 'default', 'via', gateway]);
  }
  if (v6 && v6.stack !== 'ipv4') {
    await addr6(hostNs, 'eth0', `${v6.address}/64`);
    await run(['ip', '-n', hostNs, '-6', 'route', 'add', 'default', 'via', v6.gateway, 'dev', 'eth0']);
  }
}

/**
 * Client and device on router B's LAN (one bridge); router B has the device side's NAT kind. In an
 * IPv6 lab the LAN is also router B's /64 (hosts per their stack), firewalled as in separate homes.
 */
async function buildSameLan(
  lab: { id: string; wan: string; ipv6: boolean },
  spec: SideSpec,
  clientSpec: SideSpec,
  created: string[],
): Promise<{ client: Side; device: Side }> {
  if (spec.nat === 'none' || spec.nat === 'double') throw new Error(`lab: same-lan needs a home router NAT, not ${spec.nat}`);
  const routerNs = `${lab.id}-routerb`;
  await addNs(routerNs, created, lab.ipv6);
  await lanBridge(routerNs, `${ADDR.lanRouter}/24`);
  const v6 = (stack: Stack | undefined, address: string) =>
    lab.ipv6 ? { stack: stack ?? 'ipv4', address, gateway: ADDR6.lanBRouter } : undefined;
  if (lab.ipv6) await addr6(routerNs, 'lan0', `${ADDR6.lanBRouter}/64`);
  await lanHost(routerNs, 'lanc', `${lab.id}-client`, ADDR.client, ADDR.lanRouter, created, v6(clientSpec.stack, ADDR6.clientOnB));
  await lanHost(routerNs, 'land', `${lab.id}-device`, ADDR.device, ADDR.lanRouter, created, v6(spec.stack, ADDR6.device));
  await router(routerNs, spec.udpTimeoutS, lab.ipv6);
  await plugWan(lab, routerNs, 'rb', 'wan0', ADDR.routerB, lab.ipv6 ? ADDR6.routerB : undefined);
  if (lab.ipv6) {
    await routeHomes6(routerNs, 'wan0', ADDR6.lanB);
    await nft(routerNs, firewall6Ruleset({ inbound: spec.inbound ?? 'drop' }));
  }
  await nft(
    routerNs,
    natRuleset({ kind: spec.nat, lanCidr: ADDR.lanCidr, wanAddress: ADDR.routerB, lossPercent: spec.lossPercent ?? 0, ...behaviour(spec) }),
  );
  const side = (host: string, hostAddress: string, stack: Stack | undefined, address6: string): Side => ({
    host,
    hostAddress,
    router: routerNs,
    publicAddress: ADDR.routerB,
    cgn: null,
    ...(lab.ipv6 && (stack ?? 'ipv4') !== 'ipv4' ? { hostAddress6: address6 } : {}),
  });
  return {
    client: side(`${lab.id}-client`, ADDR.client, clientSpec.stack, ADDR6.clientOnB),
    device: side(`${lab.id}-device`, ADDR.device, spec.stack, ADDR6.device),
  };
}

/**
 * Two homes (both LANs 192.168.1.0/24, port-restricted home routers) behind one carrier-grade NAT
 * (port-restricted, hairpinning: RFC 6888 REQ-9) whose inside is a bridge.
 */
async function buildSharedCgn(
  lab: { id: string; wan: string; ipv6: boolean },
  client: SideSpec,
  device: SideSpec,
  created: string[],
): Promise<{ client: Side; device: Side }> {
  const cgnNs = `${lab.id}-cgn`;
  await addNs(cgnNs, created, lab.ipv6);
  await lanBridge(cgnNs, `${ADDR.cgnInside}/24`);
  await router(cgnNs, device.udpTimeoutS, lab.ipv6);
  // IPv6 is native behind the CGN (as with DS-Lite or NAT444 beside native IPv6): the ISP's router
  // routes each home's /64. It answers on the WAN for both home routers' addresses, so the WAN's
  // static routes (lanA via routerA, lanB via routerB) lead to it unchanged.
  await plugWan(lab, cgnNs, 'cg', 'wan0', ADDR.cgnB, lab.ipv6 ? ADDR6.routerB : undefined);
  if (lab.ipv6) {
    await addr6(cgnNs, 'wan0', `${ADDR6.routerA}/64`);
    await addr6(cgnNs, 'lan0', `${ADDR6.cgnInside}/64`);
    await run(['ip', '-n', cgnNs, '-6', 'route', 'add', ADDR6.lanA, 'via', ADDR6.cgnRouterA, 'dev', 'lan0']);
    await run(['ip', '-n', cgnNs, '-6', 'route', 'add', ADDR6.lanB, 'via', ADDR6.cgnRouterB, 'dev', 'lan0']);
  }
  await nft(
    cgnNs,
    natRuleset({
      kind: 'port-restricted',
      lanCidr: ADDR.cgnLanCidr,
      wanAddress: ADDR.cgnB,
      lossPercent: device.lossPercent ?? 0,
      hairpin: true,
      ...(device.inbound ? { inbound: device.inbound } : {}),
    }),
  );
  const home = async (side: 'a' | 'b', spec: SideSpec): Promise<Side> => {
    const routerNs = `${lab.id}-router${side}`;
    const hostNs = `${lab.id}-${side === 'a' ? 'client' : 'device'}`;
    const hostAddress = side === 'a' ? ADDR.client : ADDR.device;
    const wanAddress = side === 'a' ? ADDR.cgnOutsideRouter : ADDR.cgnOutsideRouterB;
    const stack = spec.stack ?? 'ipv4';
    await addNs(routerNs, created, lab.ipv6);
    await link(cgnNs, `in${side}`, routerNs, 'wan0');
    await run(['ip', '-n', cgnNs, 'link', 'set', `in${side}`, 'master', 'lan0']);
    await run(['ip', '-n', routerNs, 'addr', 'add', `${wanAddress}/24`, 'dev', 'wan0']);
    await run(['ip', '-n', routerNs, 'route', 'add', 'default', 'via', ADDR.cgnInside]);
    await addNs(hostNs, created, lab.ipv6);
    await homeLan(routerNs, hostNs, hostAddress, stack);
    await router(routerNs, spec.udpTimeoutS, lab.ipv6);
    const lan6 =
      side === 'a'
        ? { prefix: ADDR6.lanA, router: ADDR6.lanARouter, host: ADDR6.client, wan: ADDR6.cgnRouterA }
        : { prefix: ADDR6.lanB, router: ADDR6.lanBRouter, host: ADDR6.device, wan: ADDR6.cgnRouterB };
    if (lab.ipv6) {
      await addr6(routerNs, 'wan0', `${lan6.wan}/64`);
      await run(['ip', '-n', routerNs, '-6', 'route', 'add', 'default', 'via', ADDR6.cgnInside, 'dev', 'wan0']);
      await addr6(routerNs, 'lan0', `${lan6.router}/64`);
      await nft(routerNs, firewall6Ruleset({ inbound: spec.inbound ?? 'drop' }));
      if (stack !== 'ipv4') {
        await addr6(hostNs, 'eth0', `${lan6.host}/64`);
        await run(['ip', '-n', hostNs, '-6', 'route', 'add', 'default', 'via', lan6.router, 'dev', 'eth0']);
      }
    }
    await nft(routerNs, natRuleset({ kind: 'port-restricted', lanCidr: ADDR.lanCidr, wanAddress, lossPercent: 0, ...behaviour(spec) }));
    return {
      host: hostNs,
      hostAddress,
      router: routerNs,
      publicAddress: ADDR.cgnB,
      cgn: cgnNs,
      ...(lab.ipv6 && stack !== 'ipv4' ? { hostAddress6: lan6.host } : {}),
    };
  };
  return { client: await home('a', client), device: await home('b', device) };
}

/** Remove every namespace of this run: processes in them first, then the namespaces. */
export async function removeNamespaces(names: readonly string[]): Promise<void> {
  for (const ns of [...names].reverse()) {
    const pids = (await run(['ip', 'netns', 'pids', ns]).catch(() => '')).split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await run(['ip', 'netns', 'del', ns]).catch(() => undefined);
    // Its own /etc/hosts, if the IPv6 lab gave it one (cell.ts labHostsFile), also after an interrupted run.
    await rm(join('/etc/netns', ns), { recursive: true, force: true }).catch(() => undefined);
  }
}

async function labNamespaceNames(): Promise<string[]> {
  return (await run(['ip', 'netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(LAB_PREFIX));
}

/** Every namespace this process made (forced clean-up on a second interrupt). */
export async function removeOwnNamespaces(): Promise<void> {
  await removeNamespaces((await labNamespaceNames()).filter((n) => n.startsWith(`${LAB_PREFIX}${process.pid}x`)));
}

/** Namespaces left by earlier runs whose process is gone (an interrupted run). */
export async function sweepStaleLabs(): Promise<number> {
  const stale = (await labNamespaceNames()).filter((n) => {
    const m = new RegExp(`^${LAB_PREFIX}(\\d+)x`).exec(n);
    if (!m) return false;
    try {
      process.kill(Number(m[1]), 0);
      return false;
    } catch {
      return true;
    }
  });
  await removeNamespaces(stale);
  return stale.length;
}

export async function createLab(spec: {
  client: SideSpec;
  device: SideSpec;
  secondServer?: boolean;
  homes?: Homes;
  ipv6?: boolean;
}): Promise<Lab> {
  // pid + random: two runs at once never collide, and a dead run's leftovers are recognisable.
  const id = `${LAB_PREFIX}${process.pid}x${randomBytes(2).toString('hex')}`;
  const created: string[] = [];
  try {
    const ipv6 = spec.ipv6 === true;
    const wan = `${id}-wan`;
    await addNs(wan, created, ipv6);
    await run(['ip', '-n', wan, 'link', 'add', 'br0', 'type', 'bridge']);
    await run(['ip', '-n', wan, 'link', 'set', 'br0', 'up']);
    const server = `${id}-server`;
    await addNs(server, created, ipv6);
    await plugWan({ wan }, server, 'srv', 'eth0', ADDR.server, ipv6 ? ADDR6.server : undefined);
    if (ipv6) await routeHomes6(server, 'eth0', null);
    const server2 = spec.secondServer ? `${id}-server2` : undefined;
    if (server2) {
      await addNs(server2, created, ipv6);
      await plugWan({ wan }, server2, 'srv2', 'eth0', ADDR.server2, ipv6 ? ADDR6.server2 : undefined);
      if (ipv6) await routeHomes6(server2, 'eth0', null);
    }
    const homes = spec.homes ?? 'separate';
    const { client, device } =
      homes === 'same-lan'
        ? await buildSameLan({ id, wan, ipv6 }, spec.device, spec.client, created)
        : homes === 'shared-cgn'
          ? await buildSharedCgn({ id, wan, ipv6 }, spec.client, spec.device, created)
          : {
              client: await buildSide({ id, wan, ipv6 }, 'a', spec.client, created),
              device: await buildSide({ id, wan, ipv6 }, 'b', spec.device, created),
            };
    const lab: Lab = {
      id,
      wan,
      server,
      client,
      device,
      ...(server2 ? { server2 } : {}),
      ipv6,
      namespaces: created,
      async addNamespace(suffix) {
        const ns = `${id}-${suffix}`;
        await addNs(ns, created);
        return ns;
      },
      async renumberDeviceRouter(address) {
        const ns = device.cgn ?? device.router;
        if (!ns) throw new Error('the device has no router to renumber');
        const old = device.publicAddress;
        await run(['ip', '-n', ns, 'addr', 'add', `${address}/32`, 'dev', 'wan0']);
        await run(['ip', '-n', ns, 'addr', 'del', `${old}/32`, 'dev', 'wan0']);
        await run(['ip', '-n', ns, 'route', 'replace', 'default', 'dev', 'wan0']);
        // A re-addressed router starts with an empty NAT table.
        await inNs(ns, ['conntrack', '-F']).catch(() => undefined);
        (device as { publicAddress: string }).publicAddress = address;
      },
      destroy: () => removeNamespaces(created),
    };
    await assertIsolated(lab);
    return lab;
  } catch (err) {
    await removeNamespaces(created);
    throw err;
  }
}

/**
 * Proof, before any traffic, that the lab cannot reach beyond itself: in every lab namespace,
 * every interface is loopback, the WAN bridge, or a veth whose peer lives in another lab
 * namespace. With no link out, no route can lead out.
 */
export async function assertIsolated(lab: Pick<Lab, 'namespaces'>): Promise<void> {
  const mine = new Set(lab.namespaces);
  for (const ns of lab.namespaces) {
    const ids = JSON.parse((await run(['ip', '-n', ns, '-j', 'netns', 'list-id'])) || '[]') as { nsid: number; name?: string }[];
    const byId = new Map(ids.map((i) => [i.nsid, i.name]));
    const links = JSON.parse(await run(['ip', '-n', ns, '-j', '-d', 'link', 'show'])) as {
      ifname: string;
      link_type: string;
      link_netnsid?: number;
      linkinfo?: { info_kind?: string };
    }[];
    for (const l of links) {
      const kind = l.linkinfo?.info_kind;
      if (l.link_type === 'loopback' || kind === 'bridge') continue;
      const peerNs = l.link_netnsid === undefined ? undefined : byId.get(l.link_netnsid);
      if (kind !== 'veth' || !peerNs || !mine.has(peerNs)) {
        throw new Error(
          `lab isolation check failed: ${ns} has interface ${l.ifname} (${kind ?? l.link_type}) leading to ${peerNs ?? 'outside the lab'}; refusing to run`,
        );
      }
    }
  }
}
