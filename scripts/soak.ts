#!/usr/bin/env node
/**
 * npm run soak -- --minutes N: many devices and steady connects against the real programs, for N
 * minutes of wall time, half against one server and half against two nodes sharing a real
 * redis-server. In each half:
 *  - a device fleet (scripts/soak/device-fleet.ts) of --devices simulated devices (default 10,000)
 *    registers over the real UDP protocol every --interval-ms (time-compressed: default 10 s), with
 *    random restarts and address changes (new source port, other 127.x address; in the two-node half
 *    also the other node);
 *  - one real peerlink-agent registers too and serves an echo service; a real `peerlink connect`
 *    client connects to it every CONNECT_INTERVAL_MS (in the two-node half through node 2, so the
 *    request crosses nodes). The sample of devices that clients reach is these real agents: the
 *    simulated devices register but do not answer notifies;
 *  - every program's RSS, descriptors, heap, live timers and (servers) event-loop delay p99 are
 *    sampled; a chart is written to the run's output directory (--out, default a new temp dir).
 * The last line reads `soak: <R> registrations, <L> lost, <S>% connects ok, RSS +<x>%, fds +<y>`; the
 * exit code is non-zero when L != 0, a connect failed, a program crashed, or a line is not flat
 * (scripts/soak/flatness.ts); with --flatness report, flatness is printed, not judged (npm test's
 * short run: its programs' heaps have not settled, so only the full run can judge it).
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDeviceFleet, type FleetStats } from './soak/device-fleet.js';
import { startSoakSystem, ECHO_SERVICE } from './soak/systems.js';
import { createSampler } from './soak/sampler.js';
import { formatLastLine, growthOf, type Growth } from './soak/flatness.js';
import { soakChart } from './soak/chart.js';
import { createClientProber, type ProberStats } from './fuzz/client-prober.js';
import { fetchMetrics, registrationOutcomes } from './fuzz/server-metrics.js';
import { unmetReason } from './lib/prerequisites.js';

const DEFAULT_DEVICES = 10_000;
const DEFAULT_INTERVAL_MS = 10_000;
const CONNECT_INTERVAL_MS = 3_000;
const SOURCE_ADDRESSES = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
const SOCKETS_PER_ADDRESS = 32;
/** Per interval: 1% of the devices restart, 1% change address. */
const RESTART_SHARE = 0.01;
const MOVE_SHARE = 0.01;
const MIN_SAMPLE_MS = 1_000;
const MIN_WARM_UP_MS = 25_000;
const MAX_SAMPLE_MS = 10_000;

interface Args {
  readonly minutes: number;
  readonly devices: number;
  readonly intervalMs: number;
  readonly out: string | null;
  readonly only: 'single' | 'redis' | null;
  /** judge: a line that is not flat fails the run; report: it is printed, not judged (a short run's heap has not settled). */
  readonly flatness: 'judge' | 'report';
}

function parse(argv: readonly string[]): Args {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      minutes: { type: 'string' },
      devices: { type: 'string' },
      'interval-ms': { type: 'string' },
      out: { type: 'string' },
      only: { type: 'string' },
      flatness: { type: 'string' },
    },
    strict: true,
  });
  const num = (name: string, v: string | undefined, def: number, min: number, max: number, integer = true): number => {
    const n = v === undefined ? def : Number(v.replaceAll(',', '').replaceAll('_', ''));
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max)
      throw new Error(`--${name}: expected ${integer ? 'an integer' : 'a number'} in ${min}..${max}, found ${v}`);
    return n;
  };
  if (values.only !== undefined && values.only !== 'single' && values.only !== 'redis')
    throw new Error(`--only: expected single or redis, found ${values.only}`);
  if (values.flatness !== undefined && values.flatness !== 'judge' && values.flatness !== 'report')
    throw new Error(`--flatness: expected judge or report, found ${values.flatness}`);
  return Object.freeze({
    minutes: num('minutes', values.minutes, 30, 1, 24 * 60, false),
    devices: num('devices', values.devices, DEFAULT_DEVICES, 1, 200_000),
    intervalMs: num('interval-ms', values['interval-ms'], DEFAULT_INTERVAL_MS, 1_000, 600_000),
    out: values.out ?? null,
    only: (values.only as 'single' | 'redis' | undefined) ?? null,
    flatness: (values.flatness as 'judge' | 'report' | undefined) ?? 'judge',
  });
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface PhaseResult {
  readonly name: string;
  readonly fleet: FleetStats;
  readonly connects: ProberStats;
  readonly growth: readonly Growth[];
  readonly crashes: readonly string[];
  readonly problems: readonly string[];
}

async function runPhase(args: Args, nodes: 1 | 2, durationMs: number, outDir: string): Promise<PhaseResult> {
  const name = nodes === 1 ? 'one server' : 'two nodes + Redis';
  const tag = nodes === 1 ? 'single' : 'redis';
  const dir = join(outDir, tag);
  await mkdir(dir, { recursive: true });
  say(`soak: ${name}: starting the programs (${dir})`);
  const sys = await startSoakSystem({ dir, nodes });
  try {
    const fleet = createDeviceFleet({
      devices: args.devices,
      intervalMs: args.intervalMs,
      masterKey: sys.setup.masterKey,
      targets: sys.udpPorts.map((port) => ({ host: '127.0.0.1', port })),
      sourceAddresses: SOURCE_ADDRESSES,
      socketsPerAddress: SOCKETS_PER_ADDRESS,
      restartShare: RESTART_SHARE,
      moveShare: MOVE_SHARE,
      idPrefix: `SOAK${nodes}`,
    });
    const t0 = Date.now();
    // Warm-up: every device registered twice (the registry full) and V8's heap grown to its working
    // size, which at a few thousand registrations a second takes some 20 s (one step of RSS, then flat).
    const warmUpMs = Math.max(2 * args.intervalMs + 2_000, durationMs * 0.25, MIN_WARM_UP_MS);
    const sampleMs = Math.min(MAX_SAMPLE_MS, Math.max(MIN_SAMPLE_MS, Math.round(durationMs / 120)));
    const sampler = createSampler([...sys.servers, sys.agent], sampleMs, t0);
    const prober = createClientProber({
      setup: sys.setup,
      service: ECHO_SERVICE,
      intervalMs: CONNECT_INTERVAL_MS,
      tlsPort: sys.clientTlsPort,
    });
    await fleet.start();
    sampler.start();
    prober.start();
    let nextReport = t0 + Math.max(10_000, durationMs / 10);
    while (Date.now() - t0 < durationMs && sys.crashed().length === 0) {
      await sleep(500);
      if (Date.now() >= nextReport) {
        nextReport += Math.max(10_000, durationMs / 10);
        const f = fleet.stats();
        const last = sampler.series
          .map((s) => `${s.name} ${Math.round((s.samples.at(-1)?.rssKiB ?? 0) / 1024)} MiB/${s.samples.at(-1)?.fds ?? '?'} fds`)
          .join(', ');
        say(
          `  ${Math.round((Date.now() - t0) / 1000)} s: ${f.acked} acked, ${f.lost} lost, ${f.registeredOnce}/${args.devices} registered, connects ${prober.stats().successes}/${prober.stats().attempts}; ${last}`,
        );
      }
    }
    await prober.stop();
    await fleet.stop();
    await sampler.stop();
    const fleetStats = fleet.stats();
    const connects = prober.stats();
    const growth = sampler.series.map((s) => growthOf(s, warmUpMs));
    const growthProblems = growth.flatMap((g) => g.problems);
    for (const p of args.flatness === 'report' ? growthProblems : []) say(`soak: NOT JUDGED (--flatness report) ${name}: ${p}`);
    const problems = args.flatness === 'judge' ? growthProblems : [];
    if (fleetStats.registeredOnce !== args.devices) problems.push(`${args.devices - fleetStats.registeredOnce} device(s) never registered`);
    if (connects.failures > 0) problems.push(`${connects.failures} connect(s) failed: ${connects.failureNotes.join(' / ')}`);
    if (connects.attempts === 0) problems.push('no connect attempted');
    const crashes = sys.crashed();
    for (const srv of sys.servers) {
      if (srv.metricsPort === undefined) continue;
      const outcomes = await fetchMetrics(srv.metricsPort).then(registrationOutcomes, () => ({}));
      say(`soak: ${name}: ${srv.name} registration outcomes (its metrics): ${JSON.stringify(outcomes)}`);
    }
    await writeFile(join(dir, 'samples.json'), `${JSON.stringify({ warmUpMs, series: sampler.series }, null, 1)}\n`);
    const svg = soakChart(
      `peerlink soak, ${name}: ${args.devices} devices every ${args.intervalMs / 1000} s`,
      sampler.series,
      growth,
      warmUpMs,
    );
    await writeFile(join(dir, 'soak.svg'), svg);
    say(`soak: ${name}: chart ${join(dir, 'soak.svg')}`);
    return { name, fleet: fleetStats, connects, growth, crashes, problems };
  } finally {
    await sys.stop();
  }
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  const outDir = args.out ?? (await mkdtemp(join(tmpdir(), 'peerlink-soak-')));
  await mkdir(outDir, { recursive: true });
  const redisMissing = unmetReason('redis');
  const phases: (1 | 2)[] = args.only === 'single' ? [1] : args.only === 'redis' ? [2] : [1, 2];
  if (redisMissing !== null && phases.includes(2)) throw new Error(`the two-node half needs redis-server: ${redisMissing}`);
  const phaseMs = (args.minutes * 60_000) / phases.length;
  say(
    `soak: ${args.devices} devices every ${args.intervalMs} ms, ${phases.length} half/halves of ${(phaseMs / 1000).toFixed(0)} s; output in ${outDir}`,
  );
  const results: PhaseResult[] = [];
  for (const nodes of phases) results.push(await runPhase(args, nodes, phaseMs, outDir));

  say('');
  say(`  ${'program'.padEnd(28)}${['RSS base', 'RSS end', 'RSS +%', 'fds', 'timers', 'heap floor'].map((h) => h.padStart(14)).join('')}`);
  for (const r of results) {
    for (const g of r.growth) {
      say(
        `  ${`${r.name}: ${g.name}`.padEnd(28)}${[`${(g.rssBaseKiB / 1024).toFixed(1)} MiB`, `${(g.rssEndKiB / 1024).toFixed(1)} MiB`, g.rssPct.toFixed(1), `${g.fdsBase}->${g.fdsEnd}`, `${g.timersBase}->${g.timersEnd}`, `${(g.heapFloorBaseKiB / 1024).toFixed(1)}->${(g.heapFloorEndKiB / 1024).toFixed(1)}`].map((c) => c.padStart(14)).join('')}`,
      );
    }
    const f = r.fleet;
    for (const g of r.growth) {
      say(
        `  ${`${r.name}: ${g.name}`.padEnd(28)} warm-up ended at ${(g.warmUpMs / 1000).toFixed(0)} s (${g.firstFullGcMs === null ? 'no full GC after start-up: its RSS still holds what the first one would free' : `first full GC after start-up at ${(g.firstFullGcMs / 1000).toFixed(0)} s${g.warmUpMs < g.firstFullGcMs ? ', too late to judge from' : ''}`}; ${g.heapSettledMs === null ? 'heap committed not sampled' : `heap committed settled at ${(g.heapSettledMs / 1000).toFixed(0)} s${g.warmUpMs < g.heapSettledMs ? ', too late to judge from' : ''}`})`,
      );
    }
    say(
      `  ${r.name}: sent ${f.sent}, acked ${f.acked}, cookies ${f.cookies}, lost ${f.lost} (no answer ${f.lostNoAnswer}, challenged ${f.lostChallenged}), answered late (> 2 s) ${f.slow}, dropped by the kernel at the harness's own sockets ${f.harnessDrops}, restarts ${f.restarts}, address changes ${f.moves}, registered ${f.registeredOnce}; connects ${r.connects.successes}/${r.connects.attempts}`,
    );
  }
  const problems = results.flatMap((r) => [...r.crashes, ...r.problems.map((p) => `${r.name}: ${p}`)]);
  for (const p of problems) say(`soak: FAIL ${p}`);
  const all = results.flatMap((r) => r.growth);
  const attempts = results.reduce((a, r) => a + r.connects.attempts, 0);
  const successes = results.reduce((a, r) => a + r.connects.successes, 0);
  const lost = results.reduce((a, r) => a + r.fleet.lost, 0);
  say(
    formatLastLine({
      registrations: results.reduce((a, r) => a + r.fleet.acked, 0),
      lost,
      connectsOkPct: attempts ? (100 * successes) / attempts : 0,
      rssPct: Math.max(...all.map((g) => g.rssPct)),
      fds: Math.max(...all.map((g) => g.fdsEnd - g.fdsBase)),
    }),
  );
  return problems.length === 0 && lost === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
