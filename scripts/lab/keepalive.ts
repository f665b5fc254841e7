/**
 * Keepalive in the NAT lab: a device behind a router that forgets UDP mappings after T seconds,
 * registering with a fixed interval or the adaptive keepalive, for a run of several mapping
 * lifetimes. Measured at the router, whatever the device believes:
 *  - packets/hour: UDP packets the device sent out through the router (registrations, and the
 *    adaptive keepalive's probes), from an nftables counter;
 *  - reachability: the share of samples (every 500 ms) in which the router holds the
 *    registration's mapping, i.e. in which a notification from the server would get through.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackSetup } from '../lib/loopback-setup.js';
import { DIST, startProgram, type Program } from '../lib/program.js';
import { inNs } from './exec.js';
import { ADDR, createLab, type Lab } from './topology.js';

export const KA_UDP_PORT = 7400;
export const KA_TLS_PORT = 7443;
/** The registration socket's local port: the router keeps it as the external port, so its conntrack entry is findable. */
export const KA_LOCAL_PORT = 40_000;
const SAMPLE_MS = 500;

export interface KeepaliveRunSpec {
  readonly udpTimeoutS: number;
  readonly mode: 'fixed' | 'adaptive';
  readonly durationMs: number;
  readonly intervalMs: number;
  readonly minIntervalMs: number;
  readonly maxIntervalMs: number;
  /** 'agent': the real peerlink-agent (bounds as settings allow); 'loop': the registration loop alone (time scaled down). */
  readonly device: 'agent' | 'loop';
}

export interface KeepaliveRunResult extends KeepaliveRunSpec {
  readonly packetsOut: number;
  readonly packetsPerHour: number;
  readonly reachability: number;
  readonly samples: number;
  readonly learntIntervalMs: number | null;
  readonly detail: unknown;
}

const COUNT_RULES = `
table ip lab_count {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "lan0" oifname "wan0" meta l4proto udp counter
  }
}
`;

async function packetsCounted(router: string): Promise<number> {
  const out = await inNs(router, ['nft', 'list', 'table', 'ip', 'lab_count']);
  return Number(/counter packets (\d+)/.exec(out)?.[1] ?? NaN);
}

/**
 * Does the router hold the registration socket's mapping towards the server? The kernel leaves
 * expired entries out of a dump; the remaining-seconds column is rounded down, so 0 still counts.
 */
async function mappingPresent(router: string): Promise<boolean> {
  const out = await inNs(router, ['conntrack', '-L', '-p', 'udp']).catch(() => '');
  return out.split('\n').some((l) => l.includes(`sport=${KA_LOCAL_PORT} dport=${KA_UDP_PORT}`));
}

export function keepaliveTable(rows: readonly KeepaliveRunResult[]): string {
  const lines = [
    '| router forgets after | keepalive | packets/hour (device -> WAN) | reachable (mapping held) | learnt interval | run |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.udpTimeoutS} s | ${r.mode === 'fixed' ? `fixed ${r.intervalMs / 1000} s` : `adaptive ${r.minIntervalMs / 1000}-${r.maxIntervalMs / 1000} s`} | ${r.packetsPerHour} | ${(r.reachability * 100).toFixed(1)} % of ${r.samples} samples | ${r.learntIntervalMs === null ? '-' : `${(r.learntIntervalMs / 1000).toFixed(1)} s`} | ${(r.durationMs / 60_000).toFixed(1)} min (${(r.durationMs / 1000 / r.udpTimeoutS).toFixed(0)} lifetimes) |`,
    );
  }
  return lines.join('\n');
}

export async function keepaliveRun(spec: KeepaliveRunSpec): Promise<KeepaliveRunResult> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-lab-keepalive-'));
  let lab: Lab | null = null;
  const programs: Program[] = [];
  try {
    lab = await createLab({ client: { nat: 'none' }, device: { nat: 'port-restricted', udpTimeoutS: spec.udpTimeoutS } });
    const router = lab.device.router!;
    await inNs(router, ['nft', '-f', '-'], COUNT_RULES);
    const setup = await createLoopbackSetup({
      dir,
      serverAddress: ADDR.server,
      ports: { udp: KA_UDP_PORT, tls: KA_TLS_PORT },
      services: { http: '127.0.0.1:80' },
      registerIntervalMs: Math.max(15_000, spec.intervalMs),
      // Long intervals must not make the device "stale" at the server.
      serverExtra: '[registry]\nstale_after_ms = 3600000',
      agentExtra: `[keepalive]\nmode = "${spec.mode}"\nmin_interval_ms = ${Math.max(15_000, spec.minIntervalMs)}\nmax_interval_ms = ${Math.max(15_000, spec.maxIntervalMs)}`,
    });
    const agentText = await readFile(setup.agentConfig, 'utf8');
    await writeFile(setup.agentConfig, agentText.replace(/^interval_ms = (\d+)$/m, `interval_ms = $1\nlocal_port = ${KA_LOCAL_PORT}`));
    const server = startProgram('server', ['--config', setup.serverConfig], { netns: lab.server });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');

    let loopOut = '';
    let loopDone: Promise<void> = Promise.resolve();
    let agent: Program | null = null;
    if (spec.device === 'agent') {
      agent = startProgram('agent', ['--config', setup.agentConfig], { netns: lab.device.host });
      programs.push(agent);
    } else {
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          lab.device.host,
          process.execPath,
          join(DIST, 'scripts', 'lab', 'keepalive-device.js'),
          JSON.stringify({
            identityFile: setup.identityFile,
            server: ADDR.server,
            port: KA_UDP_PORT,
            localPort: KA_LOCAL_PORT,
            durationMs: spec.durationMs,
            mode: spec.mode,
            intervalMs: spec.intervalMs,
            minIntervalMs: spec.minIntervalMs,
            maxIntervalMs: spec.maxIntervalMs,
          }),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      child.stdout.on('data', (d: Buffer) => (loopOut += d.toString()));
      loopDone = new Promise((resolve) => child.once('close', () => resolve()));
    }
    await server.waitFor((l) => l.msg === 'S202 device registered', 30_000);

    // Measure from the first registration on, for the run's duration.
    const start = Date.now();
    const packets0 = await packetsCounted(router);
    let samples = 0;
    let present = 0;
    while (Date.now() - start < spec.durationMs - 1000) {
      samples++;
      if (await mappingPresent(router)) present++;
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
    }
    const packets = (await packetsCounted(router)) - packets0;
    const elapsedMs = Date.now() - start;
    let detail: unknown = null;
    let learnt: number | null = null;
    if (agent) {
      const l = [...agent.lines].reverse().find((x) => typeof x.keepalive === 'object' && x.keepalive !== null) as
        { keepalive?: { nextIntervalMs?: number; phase?: string } } | undefined;
      detail = l?.keepalive ?? null;
      learnt = l?.keepalive?.phase === 'learnt' ? (l.keepalive.nextIntervalMs ?? null) : null;
    } else {
      await loopDone;
      detail = JSON.parse(loopOut.trim() || '{}') as { state?: { phase: string; nextIntervalMs: number } };
      const st = (detail as { state?: { phase: string; nextIntervalMs: number } | null }).state;
      learnt = st?.phase === 'learnt' ? st.nextIntervalMs : null;
    }
    return {
      ...spec,
      packetsOut: packets,
      packetsPerHour: Math.round((packets / elapsedMs) * 3_600_000),
      reachability: samples ? present / samples : 0,
      samples,
      learntIntervalMs: learnt,
      detail,
    };
  } finally {
    await Promise.all(programs.map((p) => p.stop(2000)));
    await lab?.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `npm run lab -- keepalive`: full length, the real agent, routers forgetting after 30 s and
 * 180 s, fixed 25 s against adaptive 15-300 s, all four at once for `minutes`.
 */
export async function keepaliveFullRun(minutes: number, log: (s: string) => void): Promise<string> {
  const base = {
    durationMs: Math.round(minutes * 60_000),
    intervalMs: 25_000,
    minIntervalMs: 15_000,
    maxIntervalMs: 300_000,
    device: 'agent',
  } as const;
  log(`four runs of ${minutes} min at once: routers forgetting after 30 s and 180 s, fixed 25 s vs adaptive 15-300 s`);
  const rows = await Promise.all([
    keepaliveRun({ ...base, udpTimeoutS: 30, mode: 'fixed' }),
    keepaliveRun({ ...base, udpTimeoutS: 30, mode: 'adaptive' }),
    keepaliveRun({ ...base, udpTimeoutS: 180, mode: 'fixed' }),
    keepaliveRun({ ...base, udpTimeoutS: 180, mode: 'adaptive' }),
  ]);
  for (const r of rows) log(`${r.udpTimeoutS} s router, ${r.mode}: ${JSON.stringify(r.detail)}`);
  return keepaliveTable(rows);
}
