/**
 * One lab run: build the topology for a client-side and a device-side NAT (and UPnP), start the
 * real server, agent and an echo service in their namespaces, make the client's port mapping
 * the way a user would (UPnP/NAT-PMP client, when a gateway offers it), connect with the real
 * client over --stdio, push bytes through and verify them. Everything is removed afterwards.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackSetup, type LoopbackSetup } from '../lib/loopback-setup.js';
import { DIST, PROGRAMS, startProgram, type LogLine, type Program } from '../lib/program.js';
import type { NatKind } from './nat.js';
import { ADDR, ADDR6, createLab, type Homes, type Lab, type SideSpec } from './topology.js';
import { startGateway, type Gateway, type UpnpKind } from './upnp.js';
import { inNs } from './exec.js';

export const SERVER_UDP_PORT = 7400;
export const SERVER_TLS_PORT = 7443;
export const CLIENT_PORT = 5000;
export const SERVICE_PORT = 7000;
export const CELL_PAYLOAD_BYTES = 256 * 1024;
/** The server's name in an IPv6 lab, in each host's own /etc/hosts (/etc/netns/<namespace>/hosts). */
export const LAB_SERVER_NAME = 'rv.lab';

/**
 * `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: the lab's name resolves to
 * both of the server's addresses in that namespace only. Returns the clean-up.
 */
export async function labHostsFile(namespaces: readonly string[], preferIPv4: readonly string[] = []): Promise<() => Promise<void>> {
  const text = `127.0.0.1 localhost\n::1 localhost\n${ADDR.server} ${LAB_SERVER_NAME}\n${ADDR6.server} ${LAB_SERVER_NAME}\n`;
  for (const ns of namespaces) {
    await mkdir(join('/etc/netns', ns), { recursive: true });
    await writeFile(join('/etc/netns', ns, 'hosts'), text);
    // RFC 6724 policy with IPv4 (::ffff:0:0/96) above everything: getaddrinfo lists A records first.
    if (preferIPv4.includes(ns)) await writeFile(join('/etc/netns', ns, 'gai.conf'), 'precedence ::ffff:0:0/96 100\n');
  }
  return async () => {
    for (const ns of namespaces) await rm(join('/etc/netns', ns), { recursive: true, force: true });
  };
}
/** Registration retries back off 1, 2, 4, 8 s after 3 s ack timeouts: room for five tries on a lossy link. */
export const REGISTER_WAIT_MS = 30_000;

export type UpnpSide = 'both' | 'client' | 'device';

/** The server's probe port in a cell with `probe` (the same as diagnose's, scripts/lab/diagnose.ts). */
export const CELL_PROBE_PORT = 7401;

export interface CellSpec {
  readonly client: SideSpec;
  readonly device: SideSpec;
  readonly upnp: UpnpKind;
  /** Separate homes (default), both on one LAN, or two homes behind one carrier-grade NAT. */
  readonly homes?: Homes;
  /**
   * IPv6 on the WAN and the LANs (issue 14): the server listens dual stack, the routers firewall
   * IPv6 (RFC 6092), each host has the families of its side's `stack`, and client and agent find
   * the server by a name with an A and an AAAA record (LAB_SERVER_NAME).
   */
  readonly ipv6?: boolean;
  /** Which routers run the gateway (default both). */
  readonly upnpOn?: UpnpSide;
  /** 'patent': the device's dial and the relay only (no hole punch, no reverse port). Default 'all'. */
  readonly strategies?: 'all' | 'patent';
  /** Extra lines for the agent's [dial] table, e.g. "relay_after_ms = 8000". */
  readonly dialExtra?: string;
  /** Extra lines for the agent's [reverse] table, e.g. "mapping_renew_ms = 2000". */
  readonly agentReverse?: string;
  readonly peerTimeoutMs?: number;
  readonly payloadBytes?: number;
  /** The client's whole run (connect and echo), default 30 s. */
  readonly clientTimeoutMs?: number;
  readonly registerIntervalMs?: number;
  /** Extra server settings (TOML), e.g. relay limits. */
  readonly serverExtra?: string;
  /**
   * The server's UDP probe port on (LAB_PROBE_PORT) and the agent and the client (--probe-ports) told
   * of it: each learns its NAT's mapping behaviour, and where no direct path can come the relay
   * starts at once (issue 15). Default off.
   */
  readonly probe?: boolean;
  /** Print each log line of the programs (trace mode). */
  readonly onLine?: (who: 'server' | 'agent' | 'client', l: LogLine) => void;
  /** Run between the device's registration and the client's connect (trace, renumbering). */
  readonly beforeConnect?: (ctx: CellContext) => Promise<void>;
  /** Run after the client's run, before tear-down (trace: the NAPT tables of the connection). */
  readonly afterConnect?: (ctx: CellContext) => Promise<void>;
}

export interface CellContext {
  readonly lab: Lab;
  readonly setup: LoopbackSetup;
  readonly server: Program;
  readonly agent: Program;
  /** Restart a side's gateway with its forwarding rules flushed (a router reboot: it forgets every mapping). */
  restartGateway(side: 'client' | 'device'): Promise<void>;
}

export interface CellResult {
  readonly homes: Homes;
  /** What the routers do with unsolicited packets from the WAN (drop or reset) and whether they hairpin. */
  readonly routers: string;
  readonly clientNat: NatKind;
  readonly deviceNat: NatKind;
  /** e.g. "igd2", or "igd2 (device side)" when only one router runs the gateway. */
  readonly upnp: string;
  /** The traversal target: a direct path is required here (not the relay). */
  readonly directRequired: boolean;
  readonly connected: boolean;
  /** "device dialled the client" (the patent's S208), "client dialled the device", "TCP hole punch", "relayed via server" or "none". */
  readonly path: string;
  readonly connectMs: number | null;
  readonly bytesVerified: number;
  /** The device's address as the server's equipment list holds it. */
  readonly registeredAs: string;
  readonly devicePublicAddress: string;
  readonly clientMapping: string;
  readonly error: string | null;
  /** Echoed bytes per second through the tunnel (MB/s), when connected. */
  readonly throughputMBps?: number;
  /** The family of the direct path (from the client's report of its endpoints); null when relayed or not connected. */
  readonly pathFamily?: 'ipv4' | 'ipv6' | null;
  /** Every mapping the server registered for the device (IPv6 lab: one per family the device has). */
  readonly registrations?: readonly string[];
  /** IPv6 lab: the hosts' address families, "client/device" (e.g. "dual/ipv4"). */
  readonly stacks?: string;
}

export interface ClientRun {
  readonly code: number | null;
  readonly stdoutSha: string;
  readonly stdoutBytes: number;
  /** From the first echoed byte to the last: the tunnel's throughput is stdoutBytes over this. */
  readonly streamMs: number;
  readonly stderr: string;
}

export function runClient(ns: string, args: readonly string[], input: Buffer, timeoutMs: number): Promise<ClientRun> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, PROGRAMS.client, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    let first = 0;
    let last = 0;
    child.stdout.on('data', (d: Buffer) => {
      last = performance.now();
      if (bytes === 0) first = last;
      hash.update(d);
      bytes += d.length;
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined);
    // Send only once connected: stdin waits in the pipe until the tunnel reads it.
    child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdoutSha: hash.digest('hex'), stdoutBytes: bytes, streamMs: last - first, stderr });
    });
  });
}

/** Endpoint-independent mapping (Linux masquerade without random ports; a CGN of two such NATs too). */
const EI_MAPPING: ReadonlySet<NatKind> = new Set(['full-cone', 'port-restricted', 'double']);

/**
 * The traversal issue's target: no relay where either side has a public address or a usable
 * UPnP/NAT-PMP gateway (not the inner router of a double NAT), or both NATs map endpoint-independently.
 */
export function directRequired(spec: Pick<CellSpec, 'client' | 'device' | 'upnp' | 'upnpOn' | 'homes' | 'ipv6'>): boolean {
  // One home (LAN candidates), or two behind one CGN (which hairpins): always a direct path.
  if (spec.homes === 'same-lan' || spec.homes === 'shared-cgn') return true;
  if (spec.ipv6) {
    // IPv6 on both hosts: nothing translated, two stateful firewalls: the simultaneous open passes
    // them, so a direct path is required. No family in common: only the relay can join them.
    const has = (s: SideSpec, f: 'ipv4' | 'ipv6'): boolean => (s.stack ?? 'ipv4') === f || s.stack === 'dual' || s.stack === 'dual4';
    if (has(spec.client, 'ipv6') && has(spec.device, 'ipv6')) return true;
    if (!(has(spec.client, 'ipv4') && has(spec.device, 'ipv4'))) return false;
  }
  const on = spec.upnpOn ?? 'both';
  const usableGateway = (nat: NatKind, side: 'client' | 'device'): boolean =>
    spec.upnp !== 'none' && (on === 'both' || on === side) && nat !== 'none' && nat !== 'double';
  return (
    spec.client.nat === 'none' ||
    spec.device.nat === 'none' ||
    usableGateway(spec.client.nat, 'client') ||
    usableGateway(spec.device.nat, 'device') ||
    (EI_MAPPING.has(spec.client.nat) && EI_MAPPING.has(spec.device.nat))
  );
}

/** The client's own report of its path, in the matrix's words. */
export function pathOf(stderr: string): string {
  if (/connected directly on the LAN/.test(stderr)) return 'LAN candidate';
  if (/connected directly: device dialled/.test(stderr)) return 'device dialled the client';
  if (/connected directly: we dialled the device/.test(stderr)) return 'client dialled the device';
  if (/connected directly: TCP hole punch/.test(stderr)) return 'TCP hole punch';
  if (/relayed via server/.test(stderr)) return 'relayed via server';
  return 'none';
}

/** The family of the direct path the client reports ("connected directly: ... 2a0a::3 ..." is IPv6). */
export function pathFamilyOf(stderr: string): 'ipv4' | 'ipv6' | null {
  const line = /connected directly[^\n]*/.exec(stderr)?.[0];
  if (!line) return null;
  return /\[[0-9a-f:.]+\]|[0-9a-f]{0,4}:[0-9a-f]{0,4}:[0-9a-f:.]*/i.test(line.replace(/ in \d+ ms.*$/, '')) ? 'ipv6' : 'ipv4';
}

export async function runCell(spec: CellSpec): Promise<CellResult> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-lab-'));
  const programs: Program[] = [];
  const gateways: Gateway[] = [];
  const gatewayBySide = new Map<'client' | 'device', { gateway: Gateway; router: string }>();
  let lab: Lab | null = null;
  let removeHosts: (() => Promise<void>) | null = null;
  const on = spec.upnpOn ?? 'both';
  const homes = spec.homes ?? 'separate';
  const base = {
    homes,
    routers: `${spec.device.inbound ?? 'drop'}${spec.device.hairpin ? ', hairpin' : ''}`,
    clientNat: spec.client.nat,
    deviceNat: spec.device.nat,
    upnp: spec.upnp === 'none' || on === 'both' ? spec.upnp : `${spec.upnp} (${on} side)`,
    directRequired: directRequired(spec),
    ...(spec.ipv6 ? { stacks: `${spec.client.stack ?? 'ipv4'}/${spec.device.stack ?? 'ipv4'}` } : {}),
  };
  const gatewayOn = (side: 'client' | 'device'): boolean => spec.upnp !== 'none' && (on === 'both' || on === side);
  try {
    lab = await createLab({ client: spec.client, device: spec.device, homes, ...(spec.ipv6 ? { ipv6: true } : {}) });
    if (spec.ipv6) {
      const v4first = [lab.client, lab.device].filter((_, i) => [spec.client, spec.device][i]!.stack === 'dual4').map((s) => s.host);
      removeHosts = await labHostsFile([lab.client.host, lab.device.host], v4first);
    }
    const setup = await createLoopbackSetup({
      dir,
      serverAddress: ADDR.server,
      ...(spec.ipv6 ? { listenHost: '::', agentServerHost: LAB_SERVER_NAME } : {}),
      ports: { udp: SERVER_UDP_PORT, tls: SERVER_TLS_PORT },
      services: { echo: `127.0.0.1:${SERVICE_PORT}` },
      registerIntervalMs: spec.registerIntervalMs ?? 15_000,
      // The agent maps its reverse port where a gateway offers it (on by default in real settings).
      portMapping: gatewayOn('device') ? 'auto' : 'off',
      directDialOnly: spec.strategies === 'patent',
      ...(spec.agentReverse ? { reverseExtra: spec.agentReverse } : {}),
      ...(spec.dialExtra ? { dialExtra: spec.dialExtra } : {}),
      ...(spec.serverExtra || spec.probe
        ? { serverExtra: `${spec.serverExtra ?? ''}\n${spec.probe ? `[probe]\nport = ${CELL_PROBE_PORT}\n` : ''}` }
        : {}),
    });
    if (spec.probe) {
      const text = await readFile(setup.agentConfig, 'utf8');
      if (!text.includes('server_name = "localhost"'))
        throw new Error('lab cell: the agent settings have no server_name line to add probe_port after');
      await writeFile(
        setup.agentConfig,
        text.replace('server_name = "localhost"', `server_name = "localhost"\nprobe_port = ${CELL_PROBE_PORT}`),
      );
    }
    // The gateways first: the agent asks its router for a mapping as it starts.
    if (spec.upnp !== 'none') {
      const kind = spec.upnp;
      for (const [name, side] of [
        ['client', lab.client],
        ['device', lab.device],
      ] as const) {
        // One router for both (same LAN): one gateway.
        if (gatewayOn(name) && side.router && !gateways.some((_, i) => [...gatewayBySide.values()][i]?.router === side.router)) {
          const gateway = await startGateway({ router: side.router, kind, dir, lanCidr: ADDR.lanCidr });
          gateways.push(gateway);
          gatewayBySide.set(name, { gateway, router: side.router });
        }
      }
    }
    // Killed with the namespace's other processes when the lab is removed.
    spawn(
      'ip',
      ['netns', 'exec', lab.device.host, process.execPath, join(DIST, 'scripts', 'lab', 'echo-service.js'), String(SERVICE_PORT)],
      {
        stdio: 'ignore',
      },
    );
    const server = startProgram('server', ['--config', setup.serverConfig], {
      netns: lab.server,
      onLine: (l) => spec.onLine?.('server', l),
    });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening', 30_000);
    const agent = startProgram('agent', ['--config', setup.agentConfig], {
      netns: lab.device.host,
      onLine: (l) => spec.onLine?.('agent', l),
    });
    programs.push(agent);
    // Through a lossy link a registration needs two round trips (cookie, then ack), each lost with
    // ~36% at 20% per hop, and retries back off (1, 2, 4, 8 s after a 3 s ack timeout): 30 s saw
    // only about 4 tries, and CI saw all of them lost once. Three times the wait gives it about 7.
    const registerWaitMs = REGISTER_WAIT_MS * ((spec.device.lossPercent ?? 0) > 0 ? 3 : 1);
    const registered = await server.waitFor((l) => l.msg === 'S202 device registered', registerWaitMs);
    await agent
      .waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'), registerWaitMs)
      .catch((err: Error) => {
        const seen = agent.lines.map((l) => `${String(l.msg)}${l.counters ? ` ${JSON.stringify(l.counters)}` : ''}`).join(' | ');
        throw new Error(`${err.message.split(';')[0]}; agent said: ${seen || 'nothing'}; agent exit ${agent.child.exitCode}`);
      });

    // Where a gateway offers UPnP or NAT-PMP, the client maps its own port (--map-port auto).
    let clientMapping = lab.client.router ? 'none' : 'public host';

    const restartGateway = async (side: 'client' | 'device'): Promise<void> => {
      const g = gatewayBySide.get(side);
      if (!g || spec.upnp === 'none') throw new Error(`no gateway on the ${side} side`);
      await g.gateway.stop();
      await inNs(g.router, ['nft', 'flush', 'chain', 'inet', 'filter', 'miniupnpd']);
      await inNs(g.router, ['nft', 'flush', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
      await inNs(g.router, ['nft', 'flush', 'chain', 'inet', 'filter', 'postrouting_miniupnpd']);
      const gateway = await startGateway({ router: g.router, kind: spec.upnp, dir, lanCidr: ADDR.lanCidr });
      gateways.push(gateway);
      gatewayBySide.set(side, { gateway, router: g.router });
    };
    await spec.beforeConnect?.({ lab, setup, server, agent, restartGateway });

    const payload = randomBytes(spec.payloadBytes ?? CELL_PAYLOAD_BYTES);
    const want = createHash('sha256').update(payload).digest('hex');
    const args = [
      'connect',
      setup.equipmentId,
      '--server',
      `${spec.ipv6 ? LAB_SERVER_NAME : ADDR.server}:${SERVER_TLS_PORT}`,
      '--ca',
      setup.caFile,
      ...(spec.ipv6 ? ['--server-name', 'localhost'] : []),
      '--password-file',
      setup.passwordFile,
      '--service',
      'echo',
      '--stdio',
      '--accept',
      spec.ipv6 ? `[::]:${CLIENT_PORT}` : `0.0.0.0:${CLIENT_PORT}`,
      // No --advertise-port: the accept port is advertised by default, and an explicit one claims a
      // static forward (the client then does not hint that it takes no inbound connection, issue 15).
      '--peer-timeout-ms',
      String(spec.peerTimeoutMs ?? 4000),
      '--log-level',
      'info',
      ...(gatewayOn('client') ? ['--map-port', 'auto'] : []),
      // The client learns its own NAT's mapping from the same two ports (nat/client-mapping.ts).
      ...(spec.probe ? ['--probe-ports', `${SERVER_UDP_PORT},${CELL_PROBE_PORT}`] : []),
    ];
    const r = await runClient(lab.client.host, args, payload, spec.clientTimeoutMs ?? 30_000);
    await spec.afterConnect?.({ lab, setup, server, agent, restartGateway });
    for (const line of r.stderr.split('\n')) {
      let l: LogLine;
      try {
        l = JSON.parse(line) as LogLine;
      } catch {
        continue; // a plain text line
      }
      spec.onLine?.('client', l);
      if (l.msg === 'port mapped') clientMapping = `client mapped it (${String(l.via)}): ${String(l.external)}`;
    }
    const connectMs = /(?:connected directly(?: on the LAN)?|relayed via server): .* in (\d+) ms/.exec(r.stderr)?.[1];
    const verified = r.code === 0 && r.stdoutSha === want ? r.stdoutBytes : 0;
    const err =
      /peerlink: (.*\[PEERLINK_ERR_[A-Z_]+\])/.exec(r.stderr)?.[1] ??
      (r.code !== 0
        ? `exit ${r.code}`
        : verified === payload.length
          ? null
          : `returned ${r.stdoutBytes} of ${payload.length} bytes${r.stdoutBytes === payload.length ? ' (different bytes)' : ''}`);
    return {
      ...base,
      connected: r.code === 0 && verified === payload.length,
      path: pathOf(r.stderr),
      connectMs: connectMs ? Number(connectMs) : null,
      bytesVerified: verified,
      registeredAs: String(registered.mapping ?? ''),
      pathFamily: pathFamilyOf(r.stderr),
      registrations: server.lines.filter((l) => l.msg === 'S202 device registered').map((l) => String(l.mapping)),
      devicePublicAddress: lab.device.publicAddress,
      clientMapping,
      error: verified === payload.length ? null : err,
      ...(verified > 0 && r.streamMs > 0 ? { throughputMBps: verified / 1e6 / (r.streamMs / 1000) } : {}),
    };
  } catch (err) {
    return {
      ...base,
      connected: false,
      path: 'none',
      connectMs: null,
      bytesVerified: 0,
      registeredAs: '',
      devicePublicAddress: lab?.device.publicAddress ?? '',
      clientMapping: 'n/a',
      error: (err as Error).message,
    };
  } finally {
    await Promise.all(programs.map((p) => p.stop(2000)));
    await Promise.all(gateways.map((g) => g.stop()));
    await lab?.destroy();
    await removeHosts?.();
    await rm(dir, { recursive: true, force: true });
  }
}
