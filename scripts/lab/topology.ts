/**
 * The patent's Fig. 1 as Linux network namespaces: a WAN switch (a bridge) with the rendezvous
 * server on it, and on each side either a public host, or a LAN behind a NAPT router (optionally
 * behind a carrier-grade NAT too). Names are unique per run; destroy() removes everything,
 * and nothing in it can reach beyond its own veth links (checked by assertIsolated).
 */
import { randomBytes } from 'node:crypto';
import { inNs, run } from './exec.js';
import { lossRuleset, natRuleset, type NatKind } from './nat.js';

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
});

export interface SideSpec {
  readonly nat: NatKind;
  /** UDP conntrack timeouts in the router(s), seconds (unreplied and stream). */
  readonly udpTimeoutS?: number;
  readonly lossPercent?: number;
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
}

export interface Lab {
  readonly id: string;
  readonly wan: string;
  readonly server: string;
  readonly client: Side;
  readonly device: Side;
  /** The second server node's namespace, when asked for (`secondServer`). */
  readonly server2?: string;
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

async function addNs(ns: string, created: string[]): Promise<void> {
  await run(['ip', 'netns', 'add', ns]);
  created.push(ns);
  await inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
}

/** A veth pair with one end in each namespace (never in the host's own namespace). */
async function link(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
  await run(['ip', '-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
  await run(['ip', '-n', nsA, 'link', 'set', ifA, 'up']);
  await run(['ip', '-n', nsB, 'link', 'set', ifB, 'up']);
}

/** Plug namespace `ns` into the WAN switch as interface `ifname` with a public /32. */
export async function plugWan(lab: { wan: string }, ns: string, port: string, ifname: string, address: string): Promise<void> {
  await link(lab.wan, port, ns, ifname);
  await run(['ip', '-n', lab.wan, 'link', 'set', port, 'master', 'br0']);
  await run(['ip', '-n', ns, 'addr', 'add', `${address}/32`, 'dev', ifname]);
  // Every WAN host is on one segment: reach any address directly on the link.
  await run(['ip', '-n', ns, 'route', 'add', 'default', 'dev', ifname]);
}

async function nft(ns: string, ruleset: string): Promise<void> {
  await inNs(ns, ['nft', '-f', '-'], ruleset);
  // A router whose rules silently did not load would be no NAT at all: check they are there.
  const table = /table (\w+ \w+)/.exec(ruleset)?.[1];
  if (table && !(await inNs(ns, ['nft', 'list', 'tables'])).includes(table)) {
    throw new Error(`lab: nftables table ${table} did not load in ${ns}`);
  }
}

async function router(ns: string, udpTimeoutS: number | undefined): Promise<void> {
  await inNs(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  if (udpTimeoutS !== undefined) {
    await inNs(ns, ['sysctl', '-qw', `net.netfilter.nf_conntrack_udp_timeout=${udpTimeoutS}`]);
    await inNs(ns, ['sysctl', '-qw', `net.netfilter.nf_conntrack_udp_timeout_stream=${udpTimeoutS}`]);
  }
}

async function buildSide(
  lab: { id: string; wan: string },
  side: 'a' | 'b',
  spec: SideSpec,
  created: string[],
): Promise<Side> {
  const hostNs = `${lab.id}-${side === 'a' ? 'client' : 'device'}`;
  await addNs(hostNs, created);
  const loss = spec.lossPercent ?? 0;
  if (spec.nat === 'none') {
    const address = side === 'a' ? ADDR.publicClient : ADDR.publicDevice;
    await plugWan(lab, hostNs, `h${side}`, 'eth0', address);
    if (loss > 0) await nft(hostNs, lossRuleset(loss, 'eth0'));
    return { host: hostNs, hostAddress: address, router: null, publicAddress: address, cgn: null };
  }
  const routerNs = `${lab.id}-router${side}`;
  await addNs(routerNs, created);
  const hostAddress = side === 'a' ? ADDR.client : ADDR.device;
  await link(routerNs, 'lan0', hostNs, 'eth0');
  await run(['ip', '-n', routerNs, 'addr', 'add', `${ADDR.lanRouter}/24`, 'dev', 'lan0']);
  await run(['ip', '-n', hostNs, 'addr', 'add', `${hostAddress}/24`, 'dev', 'eth0']);
  await run(['ip', '-n', hostNs, 'route', 'add', 'default', 'via', ADDR.lanRouter]);
  await router(routerNs, spec.udpTimeoutS);
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
    await nft(cgnNs, natRuleset({ kind: 'port-restricted', lanCidr: ADDR.cgnLanCidr, wanAddress: cgnAddress, lossPercent: loss }));
    await nft(routerNs, natRuleset({ kind: 'port-restricted', lanCidr: ADDR.lanCidr, wanAddress: ADDR.cgnOutsideRouter, lossPercent: 0 }));
    wanAddress = cgnAddress;
  } else {
    await plugWan(lab, routerNs, `r${side}`, 'wan0', wanAddress);
    await nft(routerNs, natRuleset({ kind: spec.nat, lanCidr: ADDR.lanCidr, wanAddress, lossPercent: loss }));
  }
  return { host: hostNs, hostAddress, router: routerNs, publicAddress: wanAddress, cgn: cgnNs };
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
  }
}

async function labNamespaceNames(): Promise<string[]> {
  return (await run(['ip', 'netns', 'list'])).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(LAB_PREFIX));
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

export async function createLab(spec: { client: SideSpec; device: SideSpec; secondServer?: boolean }): Promise<Lab> {
  // pid + random: two runs at once never collide, and a dead run's leftovers are recognisable.
  const id = `${LAB_PREFIX}${process.pid}x${randomBytes(2).toString('hex')}`;
  const created: string[] = [];
  try {
    const wan = `${id}-wan`;
    await addNs(wan, created);
    await run(['ip', '-n', wan, 'link', 'add', 'br0', 'type', 'bridge']);
    await run(['ip', '-n', wan, 'link', 'set', 'br0', 'up']);
    const server = `${id}-server`;
    await addNs(server, created);
    await plugWan({ wan }, server, 'srv', 'eth0', ADDR.server);
    const server2 = spec.secondServer ? `${id}-server2` : undefined;
    if (server2) {
      await addNs(server2, created);
      await plugWan({ wan }, server2, 'srv2', 'eth0', ADDR.server2);
    }
    const client = await buildSide({ id, wan }, 'a', spec.client, created);
    const device = await buildSide({ id, wan }, 'b', spec.device, created);
    const lab: Lab = {
      id,
      wan,
      server,
      client,
      device,
      ...(server2 ? { server2 } : {}),
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
        throw new Error(`lab isolation check failed: ${ns} has interface ${l.ifname} (${kind ?? l.link_type}) leading to ${peerNs ?? 'outside the lab'}; refusing to run`);
      }
    }
  }
}
