/**
 * npm run bench -- fleet [--quick] [--rounds R] [--nodes 2,4] [--baseline DIR] [--out FILE] (also `npm run bench -- server --only fleet`):
 * N registration nodes (N = 2 and 4) over a real Redis Cluster (three primaries, one replica each;
 * scripts/lib/redis-cluster.ts), each node with its own load generator and its own devices, against
 * N in-memory nodes measured the same way in the same run (the baseline). CPU time is read from
 * /proc of the node processes and of the cluster's primaries (cpu-time.ts), over the same window.
 *
 * Each size runs at two loads, because a node's CPU per registration depends on how many
 * datagrams each wake-up of its event loop finds:
 *   - saturation: each generator keeps 256 registrations outstanding (closed loop);
 *   - a fixed offered rate (open loop, like a fleet's devices): FIXED_PER_NODE per second per node,
 *     which every mode sustains here; so each datagram, or nearly, costs a wake-up.
 * and in four modes:
 *   - memory: the in-memory registry (the baseline);
 *   - written, one write per command: refresh 0 (every registration written) without auto
 *     pipelining, one socket write per Redis command (the behaviour before);
 *   - written, pipelined: the same with the commands of one event-loop turn in one write (now);
 *   - unchanged: the default refresh (60 s); within the run no entry is due, so a registration
 *     does not reach Redis.
 * The steady state of a fleet at interval I and refresh R writes one registration in
 * ceil(R / I) (I = 25 s, R = 60 s: 1 in 3), so the written and unchanged costs combine in that ratio.
 * With --baseline DIR (another checkout, built): `writtenBefore` and `unchangedBefore` run that
 * checkout's node (DIR/dist/scripts/bench/udp-target.js) in the same rounds, in place of
 * writtenUnpipelined: an A/B of two builds under the same load and noise.
 * Also: the nodes' CPU while idle (fixed costs: the cluster clients' slot refreshes), and the
 * primaries' CPU per written registration.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startRedisCluster } from '../lib/redis-cluster.js';
import { REGISTER_INTERVAL_MS } from '../../agent/protocol/constants.js';
import { SHARED_REFRESH_AFTER_MS } from '../../agent/server/redis-registry.js';
import { cpuSeconds } from './cpu-time.js';
import { run } from './server.js';
import { serverNodeFlags } from '../lib/server-unit.js';
import { crossNodeConnect, type CrossNodeFigures } from './cross-node.js';

const here = dirname(fileURLToPath(import.meta.url));
const script = (name: string): string => join(here, `${name}.js`);
/** Few enough that each device registers several times within the run (write on change needs a second registration). */
const DEVICES_PER_NODE = 2000;
/** Registrations each generator prepares per second of a saturation run: more than a node answers here. */
const PACKETS_PER_SECOND = 40_000;
/** The fixed offered rate per node: below what a node writing every registration sustains here with 4 nodes. */
export const FIXED_PER_NODE = 1000;
/** Devices per node at the fixed rate: each registers twice a second, so the warm-up covers every first registration. */
const FIXED_DEVICES_PER_NODE = 500;
const IDLE_SECONDS = 2;

export const MODES = ['memory', 'writtenUnpipelined', 'written', 'unchanged', 'writtenBefore', 'unchangedBefore'] as const;
export type Mode = (typeof MODES)[number];
/** The modes run: the baseline checkout's in place of the unpipelined one when there is one. */
const modesFor = (baseline: string | undefined): readonly Mode[] =>
  baseline === undefined
    ? ['memory', 'writtenUnpipelined', 'written', 'unchanged']
    : ['memory', 'written', 'writtenBefore', 'unchanged', 'unchangedBefore'];
/** Each written mode's steady state combines with this unchanged mode. */
const UNCHANGED_OF: Partial<Record<Mode, Mode>> = {
  writtenUnpipelined: 'unchanged',
  written: 'unchanged',
  writtenBefore: 'unchangedBefore',
};
export const LOADS = ['saturation', 'fixed'] as const;
export type Load = (typeof LOADS)[number];

interface LoadLine {
  answersPerSecond: number;
  answersPerCpuSecond: number;
  answersPerExtraCpuSecond?: number;
  sentPerSecond: number;
  exhausted: boolean;
}

export interface RunFigure {
  /** Mean over the nodes of registrations per node CPU-second. */
  readonly perNodeCpuSecond: number;
  /** All nodes together, per wall second (answered; and sent). */
  readonly perSecond: number;
  readonly sentPerSecond: number;
  /** Microseconds of all the primaries' CPU per registration (NaN for memory). */
  readonly redisUsPerRegistration: number;
  /** A node's CPU share while idle before the load (fixed costs), mean over the nodes; fixed-rate runs only. */
  readonly idleCpuShare: number;
  readonly written: number;
  readonly skipped: number;
  readonly failures: number;
}

interface Cluster {
  readonly seeds: readonly string[];
  readonly primaryPids: readonly number[];
}

async function nodesRun(o: {
  n: number;
  mode: Mode;
  load: Load;
  cluster: Cluster;
  seconds: number;
  master: Buffer;
  tag: string;
  baseline: string | undefined;
}): Promise<RunFigure> {
  const redis = o.mode !== 'memory';
  const unchanged = o.mode === 'unchanged' || o.mode === 'unchangedBefore';
  const refreshMs = unchanged ? SHARED_REFRESH_AFTER_MS : 0;
  const target = o.mode.endsWith('Before') ? join(o.baseline!, 'dist/scripts/bench/udp-target.js') : script('udp-target');
  const targetArgs = (i: number): string[] =>
    redis
      ? [
          target,
          'register-redis',
          o.master.toString('base64'),
          `cluster:${o.cluster.seeds.join(',')}`,
          String(refreshMs),
          `bench-node-${i}`,
          ...(o.mode === 'writtenUnpipelined' ? ['no-pipelining'] : []),
        ]
      : [script('udp-target'), 'register', o.master.toString('base64')];
  // Each node with the server unit's node flags, as deployed.
  const targets = Array.from({ length: o.n }, (_, i) => run(null, [...serverNodeFlags(), ...targetArgs(i)]));
  const fixed = o.load === 'fixed';
  try {
    const ready = (await Promise.all(targets.map((t) => t.first))) as { port: number; pid: number }[];
    let idleCpuShare = NaN;
    if (fixed) {
      // Connected and idle: what a node spends with no registration at all.
      const c0 = ready.map((r) => cpuSeconds(r.pid));
      await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
      idleCpuShare = ready.reduce((s, r, i) => s + (cpuSeconds(r.pid) - c0[i]!), 0) / ready.length / IDLE_SECONDS;
    }
    const loads = ready.map((r, i) =>
      run(null, [
        script('udp-load'),
        String(r.port),
        'register',
        String(o.seconds),
        '256',
        o.master.toString('base64'),
        String(fixed ? FIXED_DEVICES_PER_NODE : DEVICES_PER_NODE),
        String(r.pid),
        redis ? o.cluster.primaryPids.join(',') : '',
        `${o.tag}-${i}`,
        String(fixed ? FIXED_PER_NODE : PACKETS_PER_SECOND),
        String(fixed ? FIXED_PER_NODE : 0),
        // Unchanged: every device's first two registrations (the first is written) before the clock starts.
        String(unchanged ? 2 * (fixed ? FIXED_DEVICES_PER_NODE : DEVICES_PER_NODE) : 0),
      ]),
    );
    const lines = (await Promise.all(loads.map((l) => l.first))) as unknown as LoadLine[];
    await Promise.all(loads.map((l) => l.stop()));
    if (lines.some((l) => l.exhausted))
      process.stderr.write(`bench: fleet ${o.tag}: a generator ran out of packets; the figure is a lower bound\n`);
    const answered = lines.reduce((s, l) => s + l.answersPerSecond, 0);
    const sent = lines.reduce((s, l) => s + l.sentPerSecond, 0);
    if (fixed && answered < 0.9 * sent)
      process.stderr.write(
        `bench: fleet ${o.tag}: ${answered.toFixed(0)} of ${sent.toFixed(0)} registrations/s answered: the fixed rate saturated the nodes\n`,
      );
    const ends = (await Promise.all(targets.map((t) => t.stop()))) as ({ stats?: Record<string, number> } | null)[];
    if (ends.some((e) => !e?.stats))
      process.stderr.write(`bench: fleet ${o.tag}: a node did not report its counters; written/skipped are incomplete\n`);
    const stats = ends.map((e) => e?.stats ?? {});
    const sum = (k: string): number => stats.reduce((s, x) => s + (x[k] ?? 0), 0);
    if (unchanged && sum('sharedWriteSkipped') === 0)
      process.stderr.write(`bench: fleet ${o.tag}: no registration skipped Redis; the figures are not valid\n`);
    if (sum('registryUnavailable') > 0)
      process.stderr.write(
        `bench: fleet ${o.tag}: ${sum('registryUnavailable')} registrations could not reach Redis; the figures are not valid\n`,
      );
    // Each generator's window saw (nearly) the same primaries' CPU time, spent for all nodes.
    const perRedisCpuSecond = lines.reduce((s, l) => s + (l.answersPerExtraCpuSecond ?? NaN), 0);
    return {
      perNodeCpuSecond: lines.reduce((s, l) => s + l.answersPerCpuSecond, 0) / lines.length,
      perSecond: answered,
      sentPerSecond: sent,
      redisUsPerRegistration: redis ? 1e6 / perRedisCpuSecond : NaN,
      idleCpuShare,
      written: sum('sharedWrites'),
      skipped: sum('sharedWriteSkipped'),
      failures: sum('registryUnavailable'),
    };
  } finally {
    await Promise.all(targets.map((t) => t.stop()));
  }
}

export interface FleetFigures {
  readonly intervalMs: number;
  readonly refreshMs: number;
  /** Registrations written in the steady state: 1 / ceil(refresh / interval). */
  readonly writtenShare: number;
  /** runs[N][load][mode]: one figure per round (the modes run only). */
  readonly runs: Record<string, Record<Load, Partial<Record<Mode, RunFigure[]>>>>;
  /** The baseline checkout of the *Before modes, if any. */
  readonly baseline: string | null;
  readonly crossNode: CrossNodeFigures | null;
}

export async function fleetBench(o: {
  seconds: number;
  sizes: readonly number[];
  rounds: number;
  crossNode: boolean;
  quick: boolean;
  baseline?: string;
}): Promise<FleetFigures> {
  const modes = modesFor(o.baseline);
  const master = randomBytes(32);
  const intervalMs = REGISTER_INTERVAL_MS;
  const refreshMs = SHARED_REFRESH_AFTER_MS;
  const writtenShare = 1 / Math.ceil(refreshMs / intervalMs);
  const runs: FleetFigures['runs'] = {};
  for (const n of o.sizes) {
    process.stderr.write(`bench: fleet: ${n} nodes over a Redis Cluster (3 primaries + 3 replicas) ...\n`);
    const c = await startRedisCluster();
    try {
      const cluster = { seeds: c.seeds, primaryPids: await c.primaryPids() };
      const byLoad = Object.fromEntries(LOADS.map((l) => [l, Object.fromEntries(modes.map((m) => [m, [] as RunFigure[]]))])) as Record<
        Load,
        Partial<Record<Mode, RunFigure[]>>
      >;
      // Rounds alternate the modes: a neighbour's burst hits each mode alike, and the spread shows.
      for (let round = 0; round < o.rounds; round++) {
        for (const load of LOADS) {
          for (const mode of modes) {
            const tag = `N${n}${load[0]}${mode}${round}`;
            byLoad[load][mode]!.push(await nodesRun({ n, mode, load, cluster, seconds: o.seconds, master, tag, baseline: o.baseline }));
          }
        }
      }
      runs[String(n)] = byLoad;
    } finally {
      await c.stop();
    }
  }
  const crossNode = o.crossNode ? await crossNodeConnect({ rounds: o.quick ? 10 : 30 }) : null;
  return { intervalMs, refreshMs, writtenShare, runs, baseline: o.baseline ?? null, crossNode };
}

const f0 = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : '-');
const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-');
const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '-');
const median = (xs: readonly number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
/** "median (min–max)" over the rounds. */
const spread = (xs: readonly number[], f: (n: number) => string): string => {
  const s = xs.filter(Number.isFinite);
  if (s.length < 2) return f(median(s));
  return `${f(median(s))} (${f(Math.min(...s))}–${f(Math.max(...s))})`;
};

/** CPU per registration in the steady state: the written share at the write cost, the rest at the unchanged cost. */
export const steady = (share: number, written: number, unchanged: number): number => 1 / (share / written + (1 - share) / unchanged);

/** The fleet tables (markdown). Ratios are per round (each mode against the memory run of the same round), then the median. */
export function fleetReport(f: FleetFigures): string {
  let out = '';
  for (const [n, byLoad] of Object.entries(f.runs)) {
    for (const load of LOADS) {
      const r = byLoad[load];
      const modes = MODES.filter((m) => r[m] !== undefined);
      const mem = r.memory!.map((x) => x.perNodeCpuSecond);
      const ratio = (m: Mode): number[] => r[m]!.map((x, i) => x.perNodeCpuSecond / mem[i]!);
      const steadyOf = (w: Mode): number[] =>
        r[w]!.map((x, i) => steady(f.writtenShare, x.perNodeCpuSecond, r[UNCHANGED_OF[w]!]![i]!.perNodeCpuSecond));
      const title =
        load === 'saturation' ? 'at saturation (256 outstanding per node)' : `at a fixed ${FIXED_PER_NODE} registrations/s per node`;
      out += `\n${n} nodes over a Redis Cluster (3 primaries + 3 replicas), ${title}; median (min–max) of ${mem.length} rounds:\n\n`;
      out +=
        "| mode | registrations per node CPU-s | ratio to in-memory | registrations/s, all nodes (sent) | primaries' CPU per registration (µs) | idle node CPU share |\n|---|---|---|---|---|---|\n";
      for (const m of modes) {
        const x = r[m]!;
        out += `| ${m} | ${spread(
          x.map((y) => y.perNodeCpuSecond),
          f0,
        )} | ${m === 'memory' ? 'baseline' : spread(ratio(m), f2)} | ${spread(
          x.map((y) => y.perSecond),
          f0,
        )} (${f0(median(x.map((y) => y.sentPerSecond)))}) | ${spread(
          x.map((y) => y.redisUsPerRegistration),
          f1,
        )} | ${
          load === 'fixed'
            ? spread(
                x.map((y) => y.idleCpuShare),
                (v) => `${(v * 100).toFixed(1)}%`,
              )
            : '-'
        } |\n`;
      }
      const share = Math.round(1 / f.writtenShare);
      for (const w of modes.filter((m) => UNCHANGED_OF[m] !== undefined)) {
        const st = steadyOf(w);
        out += `| steady state, 1 in ${share} written (${w}), target >= 0.7 | ${spread(st, f0)} | ${spread(
          st.map((v, i) => v / mem[i]!),
          f2,
        )} | - | ${spread(
          r[w]!.map((y) => y.redisUsPerRegistration * f.writtenShare),
          f1,
        )} | - |\n`;
      }
    }
  }
  if (f.crossNode) {
    const c = f.crossNode;
    out += `\nConnect across nodes (two nodes, the device registered and attaching at node 1; ${c.rounds} requests each way, alternating):\n\n`;
    out += '| client asks | time to connect p50 / p90 (ms) | ratio to same node (p50) |\n|---|---|---|\n';
    out += `| node 1 (same node) | ${f1(c.sameNode.p50Ms)} / ${f1(c.sameNode.p90Ms)} | baseline |\n`;
    out += `| node 2 (routed to node 1 through Redis) | ${f1(c.crossNode.p50Ms)} / ${f1(c.crossNode.p90Ms)} | ${f2(c.crossNode.p50Ms / c.sameNode.p50Ms)} |\n`;
  }
  return out;
}

/** npm run bench -- fleet */
export async function fleetMain(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      out: { type: 'string' },
      quick: { type: 'boolean' },
      rounds: { type: 'string' },
      nodes: { type: 'string' },
      'no-cross-node': { type: 'boolean' },
      baseline: { type: 'string' },
    },
  });
  const quick = values.quick ?? false;
  const sizes = (values.nodes ?? '2,4').split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 16)) throw new Error('--nodes: comma-separated node counts, 1-16');
  const f = await fleetBench({
    seconds: quick ? 2 : 4,
    sizes,
    rounds: Number(values.rounds ?? (quick ? 1 : 3)),
    crossNode: !values['no-cross-node'],
    quick,
    ...(values.baseline !== undefined ? { baseline: values.baseline } : {}),
  });
  process.stdout.write(fleetReport(f));
  const out = values.out ?? 'bench-fleet-results.json';
  await writeFile(out, `${JSON.stringify({ date: new Date().toISOString(), cpus: cpus().length, quick, ...f }, null, 2)}\n`);
  process.stdout.write(`\nfigures written to ${out}\n`);
}
