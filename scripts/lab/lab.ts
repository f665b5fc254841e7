#!/usr/bin/env node
/**
 * npm run lab -- trace | matrix [--out FILE] [--jobs N] [--ipv6] | renumber | keepalive [--minutes N]
 * The patent's Fig. 1 for real: network namespaces, nftables NAPT routers, miniupnpd, and the
 * real programs. Needs root; installs its Debian packages (scripts/lib/prerequisites.ts) when missing.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { LogLine } from '../lib/program.js';
import { runCell, SERVER_UDP_PORT, type CellResult, type UpnpSide } from './cell.js';
import { translations } from './conntrack.js';
import { isRoot } from './exec.js';
import { ensureGroups, unmetReason } from '../lib/prerequisites.js';
import { NAT_KINDS, type NatKind } from './nat.js';
import { HOMES, removeOwnNamespaces, STACKS, sweepStaleLabs, type Homes, type SideSpec, type Stack } from './topology.js';

/** Host families of a cell, "client-device". */
const STACK_PAIRS = STACKS.flatMap((c) => STACKS.map((d) => `${c}-${d}` as const));
type StackPair = (typeof STACK_PAIRS)[number];
/** `--ipv6`: the IPv6 dimension's pairs (beside the IPv4 lab's ipv4-ipv4). */
const IPV6_STACK_PAIRS: readonly StackPair[] = [
  'dual-dual',
  'ipv6-dual',
  'dual-ipv6',
  'ipv6-ipv6',
  'ipv6-ipv4',
  'ipv4-ipv6',
  'dual4-dual',
  'ipv6-dual4',
  'ipv4-dual',
];
import { INBOUND_KINDS, type InboundKind } from './nat.js';
import { UPNP_KINDS, type UpnpKind } from './upnp.js';
import { renumberScenario } from './renumber.js';

const t0 = Date.now();
/** Time since start; log lines carry their own time (pino's epoch ms), so late-printed lines stay true. */
const stamp = (at = Date.now()): string => `+${String(at - t0).padStart(6)} ms`;
const out = (s: string): void => void process.stdout.write(`${s}\n`);
/** A log line's fields beyond the usual ones, compactly. */
const lineDetail = (l: LogLine): string => {
  const { level: _l, time: _t, pid: _p, hostname: _h, name: _n, msg: _m, ...rest } = l as Record<string, unknown>;
  return Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
};

async function trace(): Promise<boolean> {
  out('Fig. 1 in network namespaces: client 192.168.1.11 behind router A (4.17.168.2, NAPT, UPnP IGD v2),');
  out('device 192.168.1.3 behind router B (202.204.16.13, NAPT), rendezvous server 130.74.23.6 on the WAN.\n');
  const show =
    (who: string) =>
    (l: LogLine): void => {
      if (typeof l.msg === 'string' && /^S2\d\d/.test(l.msg))
        out(`${stamp(typeof l.time === 'number' ? l.time : Date.now())}  ${who.padEnd(6)} ${l.msg}`);
    };
  const r = await runCell({
    client: { nat: 'port-restricted' },
    device: { nat: 'port-restricted' },
    upnp: 'igd2',
    onLine: (who, l) => show(who)(l),
    async beforeConnect({ lab, server }) {
      out(`\n${stamp()}  Registration packet 201 through router B's NAPT (conntrack, Fig. 7A -> 7B):`);
      for (const t of (await translations(lab.device.router!, 'udp')).filter((x) => x.before.dst.endsWith(`:${SERVER_UDP_PORT}`))) {
        out(`            LAN side  SA:SP ${t.before.src.padEnd(22)} DA:DP ${t.before.dst}`);
        out(`            WAN side  SA:SP ${t.after.src.padEnd(22)} DA:DP ${t.after.dst}`);
      }
      server.child.kill('SIGUSR2');
      const list = await server.waitFor((l) => l.msg === 'equipment list');
      out(`\n${stamp()}  Equipment information list at the server (Fig. 9):`);
      out('            equipment ID        IP address        port   last seen');
      for (const e of list.equipmentList as { id: string; address: string; port: number; lastSeenMs: number }[]) {
        out(`            ${e.id.padEnd(19)} ${e.address.padEnd(17)} ${String(e.port).padEnd(6)} ${new Date(e.lastSeenMs).toISOString()}`);
      }
      out('');
    },
    async afterConnect({ lab }) {
      out(`\n${stamp()}  Notification packet 205 came back through the registration's mapping (Fig. 8B -> 8A):`);
      for (const t of (await translations(lab.device.router!, 'udp')).filter((x) => x.before.dst.endsWith(`:${SERVER_UDP_PORT}`))) {
        out(`            WAN side  SA:SP ${t.after.dst.padEnd(22)} DA:DP ${t.after.src}`);
        out(`            LAN side  SA:SP ${t.before.dst.padEnd(22)} DA:DP ${t.before.src}`);
      }
      out(`\n${stamp()}  The device's TCP connection 208 through both NAPTs (conntrack; router A's entry is Fig. 6's second row):`);
      for (const t of (await translations(lab.device.router!, 'tcp')).filter((x) => x.before.dst.endsWith(':5000'))) {
        out(`            router B  LAN side ${t.before.src} -> ${t.before.dst}   WAN side ${t.after.src} -> ${t.after.dst}`);
      }
      for (const t of (await translations(lab.client.router!, 'tcp')).filter((x) => x.before.dst.endsWith(':5000'))) {
        out(`            router A  WAN side ${t.before.src} -> ${t.before.dst}   LAN side ${t.after.src} -> ${t.after.dst}`);
      }
    },
  });
  out(
    `\n${stamp()}  result: ${r.connected ? 'connected' : 'FAILED'}; path: ${r.path}; time to connect ${r.connectMs ?? '-'} ms; ${r.bytesVerified} bytes verified; client mapping ${r.clientMapping}${r.error ? `; error ${r.error}` : ''}`,
  );
  return r.connected;
}

export function matrixTable(results: readonly CellResult[]): string {
  // The IPv6 dimension (issue 14): the hosts' families and the direct path's family, when any cell has them.
  const v6 = results.some((r) => r.stacks !== undefined);
  const lines = [
    `| homes | routers | ${v6 ? 'stacks (client/device) | ' : ''}client NAT | device NAT | UPnP/NAT-PMP | connected | path | ${v6 ? 'family | ' : ''}target | time to connect | bytes verified | device registered as | error |`,
    `|---|---|---|---|---|---|---|---|---|---|---|---|${v6 ? '---|---|' : ''}`,
  ];
  for (const r of results) {
    const target = r.directRequired
      ? r.connected && r.path !== 'relayed via server'
        ? 'direct required: met'
        : '**direct required: missed**'
      : 'relay allowed';
    const registered = (r.registrations?.length ? r.registrations.join(', ') : r.registeredAs) || '-';
    lines.push(
      `| ${r.homes} | ${r.routers} | ${v6 ? `${r.stacks ?? 'ipv4/ipv4'} | ` : ''}${r.homes === 'same-lan' ? '(same router)' : r.clientNat} | ${r.deviceNat} | ${r.upnp} | ${r.connected ? 'yes' : '**no**'} | ${r.path} | ${v6 ? `${r.pathFamily ?? '-'} | ` : ''}${target} | ${r.connectMs === null ? '-' : `${r.connectMs} ms`} | ${r.bytesVerified} | ${registered} | ${r.connected ? '' : (/PEERLINK_ERR_[A-Z_]+/.exec(r.error ?? '')?.[0] ?? (r.error ?? '').replace(/\|/g, '/').slice(0, 80))} |`,
    );
  }
  const ok = results.filter((r) => r.connected).length;
  const required = results.filter((r) => r.directRequired);
  const missed = required.filter((r) => r.path === 'relayed via server' || !r.connected).length;
  const byPath = new Map<string, number>();
  for (const r of results) byPath.set(r.path, (byPath.get(r.path) ?? 0) + 1);
  const direct = results.filter((r) => r.connected && r.path !== 'relayed via server' && r.connectMs !== null).map((r) => r.connectMs!);
  const relayed = results.filter((r) => r.connected && r.path === 'relayed via server' && r.connectMs !== null).map((r) => r.connectMs!);
  const median = (xs: number[]): string => (xs.length ? `${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]} ms` : '-');
  lines.push(
    '',
    `${ok} of ${results.length} cells connected; ${required.length - missed} of ${required.length} cells that require a direct path got one.`,
    `Paths: ${[...byPath].map(([p, n]) => `${p} ${n}`).join(', ')}. Median time to connect: direct ${median(direct)}, relayed ${median(relayed)}.`,
  );
  if (v6) {
    const cells6 = results.filter((r) => r.stacks !== undefined);
    const over6 = cells6.filter((r) => r.connected && r.pathFamily === 'ipv6').length;
    const both = cells6.filter((r) => r.stacks!.split('/').every((x) => x !== 'ipv4'));
    lines.push(
      `IPv6 lab: ${over6} of ${cells6.length} cells connected directly over IPv6 (${both.filter((r) => r.connected && r.pathFamily === 'ipv6').length} of the ${both.length} where both hosts have IPv6); ` +
        `${cells6.filter((r) => r.connected && r.path === 'relayed via server').length} relayed; ${cells6.filter((r) => !r.connected).length} not connected.`,
    );
  }
  return lines.join('\n');
}

let interrupted = false;

/**
 * The rows beyond two separate homes (issue 14): client and device on one router's LAN (hairpin
 * off and on; a symmetric router), and two homes behind one carrier-grade NAT.
 */
const HOME_ROWS: readonly { homes: Homes; client: NatKind; device: NatKind; hairpin: boolean }[] = [
  { homes: 'same-lan', client: 'port-restricted', device: 'port-restricted', hairpin: false },
  { homes: 'same-lan', client: 'port-restricted', device: 'port-restricted', hairpin: true },
  { homes: 'same-lan', client: 'symmetric', device: 'symmetric', hairpin: false },
  { homes: 'shared-cgn', client: 'double', device: 'double', hairpin: false },
];

function listOf<T extends string>(what: string, raw: string | undefined, allowed: readonly T[], dflt: readonly T[]): readonly T[] {
  if (raw === undefined) return dflt;
  const xs = raw.split(',').map((x) => x.trim());
  for (const x of xs)
    if (!allowed.includes(x as T)) throw new Error(`lab: --${what}: expected one of ${allowed.join(', ')}, found ${JSON.stringify(x)}`);
  return xs as T[];
}

async function matrix(opts: {
  out?: string;
  jobs: number;
  quick: boolean;
  side: Omit<SideSpec, 'nat'>;
  /** Router flavours to run every cell under (default drop only). */
  inbound: readonly InboundKind[];
  /** Which homes' rows: the separate-homes grid, and/or the same-LAN and shared-CGN rows. */
  homes: readonly Homes[];
  clientNats: readonly NatKind[];
  deviceNats: readonly NatKind[];
  /** Host families, "client-device" (issue 14); "ipv4-ipv4" is the IPv4 lab, anything else an IPv6 lab. */
  stacks: readonly StackPair[];
  probe: boolean;
}): Promise<boolean> {
  const nats: readonly NatKind[] = NAT_KINDS;
  // Gateways on both routers for each kind, then IGDv2 on one side only (who maps matters).
  const variants: readonly { upnp: UpnpKind; upnpOn: UpnpSide }[] = opts.quick
    ? [
        { upnp: 'none', upnpOn: 'both' },
        { upnp: 'igd2', upnpOn: 'both' },
      ]
    : [
        ...UPNP_KINDS.map((upnp) => ({ upnp, upnpOn: 'both' as const })),
        { upnp: 'igd2', upnpOn: 'client' },
        { upnp: 'igd2', upnpOn: 'device' },
      ];
  const cells: {
    client: NatKind;
    device: NatKind;
    upnp: UpnpKind;
    upnpOn: UpnpSide;
    homes: Homes;
    inbound: InboundKind;
    hairpin: boolean;
    stacks: StackPair;
  }[] = [];
  for (const stacks of opts.stacks) {
    const ipv6 = stacks !== 'ipv4-ipv4';
    for (const inbound of opts.inbound) {
      if (opts.homes.includes('separate')) {
        // IPv6 cells: without gateways (the IPv4 port mappings are the IPv4 matrix's) and without the
        // carrier-grade NAT (IPv4 only), for every other pair of home routers.
        for (const v of ipv6 ? variants.filter((x) => x.upnp === 'none') : variants) {
          for (const client of nats) {
            for (const device of nats) {
              if (ipv6 && (client === 'double' || device === 'double')) continue;
              if (opts.clientNats.includes(client) && opts.deviceNats.includes(device))
                cells.push({ client, device, ...v, homes: 'separate', inbound, hairpin: false, stacks });
            }
          }
        }
      }
      // The same-LAN and shared-CGN rows over every pair of stacks too (IPv6 native beside the CGN).
      for (const row of HOME_ROWS)
        if (opts.homes.includes(row.homes)) cells.push({ ...row, upnp: 'none', upnpOn: 'both', inbound, stacks });
    }
  }
  const results: CellResult[] = new Array(cells.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cells.length && !interrupted) {
      const i = next++;
      const c = cells[i]!;
      const lines: string[] = [];
      const routers = { inbound: c.inbound, ...(c.hairpin ? { hairpin: true } : {}) };
      const [clientStack, deviceStack] = c.stacks.split('-') as [Stack, Stack];
      const ipv6 = c.stacks !== 'ipv4-ipv4';
      results[i] = await runCell({
        client: { ...opts.side, ...routers, nat: c.client, ...(ipv6 ? { stack: clientStack } : {}) },
        device: { ...opts.side, ...routers, nat: c.device, ...(ipv6 ? { stack: deviceStack } : {}) },
        ...(ipv6 ? { ipv6: true } : {}),
        homes: c.homes,
        upnp: c.upnp,
        upnpOn: c.upnpOn,
        probe: opts.probe,
        // On lossy links: a connect may take retransmissions, and TCP through 20% loss is slow,
        // so a small payload and longer budgets (the target there is that connect succeeds).
        ...(opts.side.lossPercent ? { peerTimeoutMs: 20_000, payloadBytes: 16 * 1024, clientTimeoutMs: 90_000 } : {}),
        onLine: (who, l) =>
          lines.push(
            `${typeof l.time === 'number' ? new Date(l.time).toISOString() : '-'} ${who.padEnd(6)} ${String(l.msg)}${lineDetail(l)}`,
          ),
      });
      const r = results[i]!;
      // A failed cell's program logs, for looking into it afterwards.
      if (!r.connected && opts.out) await writeFile(`${opts.out}.cell-${i + 1}.log`, `${JSON.stringify(r)}\n${lines.join('\n')}\n`);
      process.stderr.write(
        `${stamp()}  [${i + 1}/${cells.length}] ${c.homes}, routers ${r.routers}, ${r.stacks ? `stacks ${r.stacks}, ` : ''}client ${c.client}, device ${c.device}, upnp ${r.upnp}: ${r.connected ? `connected in ${r.connectMs} ms${r.pathFamily ? ` (${r.path}, ${r.pathFamily})` : ''}` : `no (${r.error})`}\n`,
      );
    }
  };
  await Promise.all(Array.from({ length: opts.jobs }, worker));
  const table = matrixTable(results.filter(Boolean));
  out(table);
  if (opts.out) await writeFile(opts.out, `${table}\n`);
  return true;
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      jobs: { type: 'string' },
      quick: { type: 'boolean' },
      loss: { type: 'string' },
      'udp-timeout': { type: 'string' },
      client: { type: 'string' },
      device: { type: 'string' },
      upnp: { type: 'string' },
      'upnp-on': { type: 'string' },
      minutes: { type: 'string' },
      inbound: { type: 'string' },
      homes: { type: 'string' },
      hairpin: { type: 'boolean' },
      runs: { type: 'string' },
      ipv6: { type: 'boolean' },
      stacks: { type: 'string' },
      probe: { type: 'string' },
    },
  });
  if (!isRoot()) {
    process.stderr.write('lab: needs root (network namespaces, nftables, miniupnpd); run it as root, which installs what it lacks\n');
    return 2;
  }
  const installed = ensureGroups(['lab'], (l) => process.stderr.write(`lab: ${l}\n`));
  const lacking = unmetReason('lab');
  if (lacking !== null) {
    process.stderr.write(
      `lab: ${lacking}${installed.ok ? '' : `; apt-get failed:\n${installed.output.trim().split('\n').slice(-10).join('\n')}`}\n`,
    );
    return 2;
  }
  const swept = await sweepStaleLabs();
  if (swept) process.stderr.write(`lab: removed ${swept} namespaces left by an interrupted run\n`);
  const stop = (): void => {
    // No new cells; running ones remove their namespaces in their finally blocks. A second
    // signal removes whatever this run still has and exits at once.
    interrupted = true;
    process.stderr.write('lab: interrupted; finishing the running cells and cleaning up (again to force)\n');
    const force = (): void => {
      void removeOwnNamespaces().finally(() => process.exit(130));
    };
    process.once('SIGINT', force);
    process.once('SIGTERM', force);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const cmd = positionals[0];
  if (cmd === 'trace') return (await trace()) ? 0 : 1;
  // The server's probe port (the agent learns its NAT's mapping: the relay need not wait where no direct path can come).
  const probe = listOf('probe', values.probe, ['on', 'off'] as const, ['on'])[0] === 'on';
  const side: Omit<SideSpec, 'nat'> = {
    ...(values.loss ? { lossPercent: Number(values.loss) } : {}),
    ...(values['udp-timeout'] ? { udpTimeoutS: Number(values['udp-timeout']) } : {}),
  };
  if (cmd === 'matrix') {
    await matrix({
      out: values.out,
      jobs: Number(values.jobs ?? 2),
      quick: values.quick ?? false,
      side,
      inbound: listOf('inbound', values.inbound, INBOUND_KINDS, ['drop']),
      homes: listOf('homes', values.homes, HOMES, HOMES),
      clientNats: listOf('client', values.client, NAT_KINDS, NAT_KINDS),
      deviceNats: listOf('device', values.device, NAT_KINDS, NAT_KINDS),
      stacks: listOf('stacks', values.stacks, STACK_PAIRS, values.ipv6 ? ['ipv4-ipv4', ...IPV6_STACK_PAIRS] : ['ipv4-ipv4']),
      probe,
    });
    return interrupted ? 130 : 0;
  }
  if (cmd === 'cell') {
    // One cell with every program's log lines: for looking into a single combination.
    const routers = {
      inbound: listOf('inbound', values.inbound, INBOUND_KINDS, ['drop'])[0]!,
      ...(values.hairpin ? { hairpin: true } : {}),
    };
    const r = await runCell({
      client: { ...side, ...routers, nat: (values.client ?? 'port-restricted') as NatKind },
      device: { ...side, ...routers, nat: (values.device ?? 'port-restricted') as NatKind },
      homes: listOf('homes', values.homes, HOMES, ['separate'])[0]!,
      upnp: (values.upnp ?? 'none') as UpnpKind,
      upnpOn: (values['upnp-on'] ?? 'both') as UpnpSide,
      probe,
      onLine: (who, l) => out(`${stamp()}  ${who.padEnd(6)} ${String(l.msg)}${lineDetail(l)}`),
    });
    out(
      `${stamp()}  result: ${r.connected ? 'connected' : 'FAILED'}; path: ${r.path}; ${r.connectMs ?? '-'} ms; ${r.bytesVerified} bytes verified${r.error ? `; error ${r.error}` : ''}`,
    );
    return r.connected ? 0 : 1;
  }
  if (cmd === 'homes') {
    // Issue 14's figures: same-LAN time to connect and throughput against two homes' paths.
    const runs = Number(values.runs ?? 3);
    const payloadBytes = 32 * 1024 * 1024;
    const configs = [
      {
        name: 'same LAN, no hairpin (LAN candidate)',
        homes: 'same-lan' as const,
        client: { nat: 'port-restricted' as const },
        device: { nat: 'port-restricted' as const },
        upnp: 'none' as const,
      },
      {
        name: 'same LAN, hairpin (LAN candidate)',
        homes: 'same-lan' as const,
        client: { nat: 'port-restricted' as const, hairpin: true },
        device: { nat: 'port-restricted' as const, hairpin: true },
        upnp: 'none' as const,
      },
      {
        name: "two homes, the patent's path (device dials the client's UPnP mapping)",
        homes: 'separate' as const,
        client: { nat: 'port-restricted' as const },
        device: { nat: 'port-restricted' as const },
        upnp: 'igd2' as const,
        upnpOn: 'client' as const,
        strategies: 'patent' as const,
      },
      {
        name: 'two homes, relayed (symmetric NATs)',
        homes: 'separate' as const,
        client: { nat: 'symmetric' as const },
        device: { nat: 'symmetric' as const },
        upnp: 'none' as const,
      },
    ];
    out('| path | runs | connected directly | time to connect (median) | throughput, MB/s (median) |');
    out('|---|---|---|---|---|');
    for (const c of configs) {
      const rs: CellResult[] = [];
      for (let i = 0; i < runs && !interrupted; i++) {
        const r = await runCell({ ...c, payloadBytes, peerTimeoutMs: 10_000, clientTimeoutMs: 120_000 });
        process.stderr.write(
          `${stamp()}  ${c.name}: ${r.connected ? `${r.path}, ${r.connectMs} ms, ${r.throughputMBps?.toFixed(1)} MB/s` : `no (${r.error})`}\n`,
        );
        rs.push(r);
      }
      const med = (xs: number[]): number | null => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : null);
      const ok = rs.filter((r) => r.connected);
      const connect = med(ok.map((r) => r.connectMs ?? 0));
      const mbps = med(ok.map((r) => r.throughputMBps ?? 0));
      out(
        `| ${c.name} | ${rs.length} | ${ok.filter((r) => r.path !== 'relayed via server').length} | ${connect === null ? '-' : `${connect} ms`} | ${mbps === null ? '-' : mbps.toFixed(1)} |`,
      );
    }
    return 0;
  }
  if (cmd === 'renumber') {
    const r = await renumberScenario({ log: (s) => out(`${stamp()}  ${s}`) });
    return r.connected ? 0 : 1;
  }
  if (cmd === 'keepalive') {
    const { keepaliveFullRun } = await import('./keepalive.js');
    const table = await keepaliveFullRun(Number(values.minutes ?? 40), (l) => out(`${stamp()}  ${l}`));
    out(table);
    if (values.out) await writeFile(values.out, `${table}\n`);
    return 0;
  }
  process.stderr.write(
    'usage: npm run lab -- trace | cell [--client NAT --device NAT --upnp KIND --homes HOMES --inbound drop|reset --hairpin --probe on|off] | matrix [--out FILE] [--jobs N] [--quick] [--loss PERCENT] [--udp-timeout S] [--inbound drop,reset] [--homes separate,same-lan,shared-cgn] [--client NATS] [--device NATS] [--ipv6 | --stacks CLIENT-DEVICE,... (ipv4, ipv6, dual, dual4)] [--probe on|off] | homes [--runs N] | renumber | keepalive [--minutes N]\n',
  );
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`lab: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
