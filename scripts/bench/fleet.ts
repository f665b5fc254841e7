/**
 * npm run bench -- server --only fleet: N registration nodes (N = 2 and 4) over a real Redis
 * Cluster (three primaries, one replica each; scripts/lib/redis-cluster.ts), each node with its own
 * load generator and its own devices. Per node CPU-second against the in-memory registry measured
 * in the same run, and registrations per CPU-second of the cluster's primaries (all of them summed):
 *   - "every registration written": refresh 0, the Redis cost of a write (the old behaviour);
 *   - "write on change": the default 60 s refresh; within the bench's seconds no entry is due, so
 *     this is the cost of a registration that does not reach Redis;
 *   - the steady state of a fleet: at interval I and refresh R, one registration in ceil(R / I)
 *     is written (I = 25 s, R = 60 s: 1 in 3), so the per-registration costs combine in that ratio.
 * One node (N = 1) runs pinned (node on core 0, load on core 1) against the in-memory baseline,
 * also pinned; N = 2 and 4 nodes and their generators share the cores. The figures are per
 * CPU-second of the process measured (and the primaries' summed CPU time for Redis).
 */
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRedisCluster } from '../lib/redis-cluster.js';
import { REGISTER_INTERVAL_MS } from '../../agent/protocol/constants.js';
import { SHARED_REFRESH_AFTER_MS } from '../../agent/server/redis-registry.js';
import { run } from './server.js';

const here = dirname(fileURLToPath(import.meta.url));
const script = (name: string): string => join(here, `${name}.js`);
/** Few enough that each device registers several times within the run (write on change needs a second registration). */
const DEVICES_PER_NODE = 2000;
/** Registrations each generator prepares per second of run: more than a node answers here, few enough to prepare before the cookies expire. */
const PACKETS_PER_SECOND = 40_000;

interface LoadLine {
  answersPerSecond: number;
  answersPerCpuSecond: number;
  answersPerExtraCpuSecond?: number;
  exhausted: boolean;
}

interface NodesFigure {
  /** Mean over the nodes of registrations per node CPU-second. */
  readonly perNodeCpuSecond: number;
  /** All nodes together, per wall second. */
  readonly perSecond: number;
  /** Registrations (all nodes) per CPU-second of all the cluster's primaries. */
  readonly perRedisCpuSecond: number;
  readonly written: number;
  readonly skipped: number;
  readonly failures: number;
}

async function nodesRun(o: { n: number; refreshMs: number; seeds: readonly string[]; primaryPids: readonly number[]; seconds: number; master: Buffer; tag: string }): Promise<NodesFigure> {
  // One node: pinned like the single-node bench (node on core 0, its load on core 1), so the node is
  // saturated and its CPU per registration is its work, not its waiting; several: unpinned.
  const pinned = o.n === 1;
  const targets = Array.from({ length: o.n }, (_, i) =>
    run(pinned ? 0 : null, [script('udp-target'), 'register-redis', o.master.toString('base64'), `cluster:${o.seeds.join(',')}`, String(o.refreshMs), `bench-node-${i}`]),
  );
  let stats: { sharedWrites?: number; sharedWriteSkipped?: number; registryUnavailable?: number }[] = [];
  try {
    const ready = (await Promise.all(targets.map((t) => t.first))) as { port: number; pid: number }[];
    const loads = ready.map((r, i) =>
      run(pinned ? 1 : null, [
        script('udp-load'), String(r.port), 'register', String(o.seconds), '256', o.master.toString('base64'), String(DEVICES_PER_NODE), String(r.pid),
        o.primaryPids.join(','), `${o.tag}-${i}`, String(PACKETS_PER_SECOND),
      ]),
    );
    const lines = (await Promise.all(loads.map((l) => l.first))) as unknown as LoadLine[];
    await Promise.all(loads.map((l) => l.stop()));
    if (lines.some((l) => l.exhausted)) process.stderr.write(`bench: fleet ${o.tag}: a generator ran out of packets; the figure is a lower bound\n`);
    const mean = lines.reduce((s, l) => s + l.answersPerCpuSecond, 0) / lines.length;
    return {
      perNodeCpuSecond: mean,
      perSecond: lines.reduce((s, l) => s + l.answersPerSecond, 0),
      // Each generator's window saw (nearly) the same primaries' CPU time, spent for all nodes.
      perRedisCpuSecond: lines.reduce((s, l) => s + (l.answersPerExtraCpuSecond ?? NaN), 0),
      ...(await (async () => {
        const ends = (await Promise.all(targets.map((t) => t.stop()))) as ({ stats?: Record<string, number> } | null)[];
        if (ends.some((e) => !e?.stats)) process.stderr.write(`bench: fleet ${o.tag}: a node did not report its counters; written/skipped are incomplete\n`);
        stats = ends.map((e) => e?.stats ?? {});
        if (o.refreshMs > 0 && stats.every((x) => !x.sharedWriteSkipped)) process.stderr.write(`bench: fleet ${o.tag}: no registration skipped Redis (stale cookies? an overloaded machine); the figures are not valid\n`);
        const failed = stats.reduce((s, x) => s + (x.registryUnavailable ?? 0), 0);
        if (failed > 0) process.stderr.write(`bench: fleet ${o.tag}: ${failed} registrations could not reach Redis; the figures are not valid\n`);
        return {
          written: stats.reduce((s, x) => s + (x.sharedWrites ?? 0), 0),
          skipped: stats.reduce((s, x) => s + (x.sharedWriteSkipped ?? 0), 0),
          failures: stats.reduce((s, x) => s + (x.registryUnavailable ?? 0), 0),
        };
      })()),
    };
  } finally {
    await Promise.all(targets.map((t) => t.stop()));
  }
}

export interface FleetFigures {
  readonly memoryPerCpuSecond: number;
  readonly intervalMs: number;
  readonly refreshMs: number;
  /** Registrations written in the steady state: 1 / ceil(refresh / interval). */
  readonly writtenShare: number;
  readonly byNodes: Record<string, { readonly everyWrite: NodesFigure; readonly onChange: NodesFigure; readonly steadyPerNodeCpuSecond: number; readonly steadyPerRedisCpuSecond: number }>;
}

export async function fleetBench(o: { seconds: number; sizes: readonly number[] }): Promise<FleetFigures> {
  const master = randomBytes(32);
  // The in-memory baseline, in this run, pinned as the one-node run is.
  const target = run(0, [script('udp-target'), 'register', master.toString('base64')]);
  let memoryPerCpuSecond: number;
  try {
    const { port, pid } = (await target.first) as { port: number; pid: number };
    const load = run(1, [script('udp-load'), String(port), 'register', String(o.seconds), '256', master.toString('base64'), String(DEVICES_PER_NODE), String(pid), '', 'MEM', String(PACKETS_PER_SECOND)]);
    memoryPerCpuSecond = ((await load.first) as unknown as LoadLine).answersPerCpuSecond;
    await load.stop();
  } finally {
    await target.stop();
  }
  const intervalMs = REGISTER_INTERVAL_MS;
  const refreshMs = SHARED_REFRESH_AFTER_MS;
  const writtenShare = 1 / Math.ceil(refreshMs / intervalMs);
  const byNodes: FleetFigures['byNodes'] = {};
  for (const n of o.sizes) {
    process.stderr.write(`bench: fleet: ${n} nodes over a Redis Cluster (3 primaries + 3 replicas) ...\n`);
    const cluster = await startRedisCluster();
    try {
      const common = { n, seeds: cluster.seeds, primaryPids: await cluster.primaryPids(), seconds: o.seconds, master };
      const everyWrite = await nodesRun({ ...common, refreshMs: 0, tag: `N${n}W` });
      const onChange = await nodesRun({ ...common, refreshMs, tag: `N${n}C` });
      // CPU per registration in the steady state: the written share at the write cost, the rest at the skip cost.
      const perReg = (w: number, c: number): number => 1 / (writtenShare / w + (1 - writtenShare) / c);
      byNodes[String(n)] = {
        everyWrite,
        onChange,
        steadyPerNodeCpuSecond: perReg(everyWrite.perNodeCpuSecond, onChange.perNodeCpuSecond),
        steadyPerRedisCpuSecond: everyWrite.perRedisCpuSecond / writtenShare,
      };
    } finally {
      await cluster.stop();
    }
  }
  return { memoryPerCpuSecond, intervalMs, refreshMs, writtenShare, byNodes };
}

const f0 = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : '-');
const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '-');

/** The fleet table (markdown). */
export function fleetRows(f: FleetFigures): [string, string, string, string][] {
  const rows: [string, string, string, string][] = [
    ['registrations per CPU-second, in-memory node (pinned, this run)', f0(f.memoryPerCpuSecond), 'baseline', '1.00'],
  ];
  for (const [n, x] of Object.entries(f.byNodes)) {
    const r = (v: number): string => f2(v / f.memoryPerCpuSecond);
    rows.push(
      [`${n} nodes, cluster, every registration written: per node CPU-s / per Redis CPU-s (all primaries)`, `${f0(x.everyWrite.perNodeCpuSecond)} / ${f0(x.everyWrite.perRedisCpuSecond)}`, 'report', r(x.everyWrite.perNodeCpuSecond)],
      [`${n} nodes, cluster, unchanged registration (write on change, not due): per node CPU-s`, f0(x.onChange.perNodeCpuSecond), 'report', r(x.onChange.perNodeCpuSecond)],
      [`${n} nodes, steady state I = ${f.intervalMs / 1000} s, refresh ${f.refreshMs / 1000} s (1 in ${Math.round(1 / f.writtenShare)} written): per node CPU-s`, f0(x.steadyPerNodeCpuSecond), '>= 0.7', r(x.steadyPerNodeCpuSecond)],
      [`${n} nodes, steady state: registrations per Redis CPU-second (all primaries)`, f0(x.steadyPerRedisCpuSecond), 'report', '-'],
      [`${n} nodes: registrations/s all nodes (wall; written / skipped / failed writes)`, `${f0(x.onChange.perSecond)} (${x.everyWrite.written + x.onChange.written} / ${x.onChange.skipped} / ${x.everyWrite.failures + x.onChange.failures})`, 'report', '-'],
    );
  }
  return rows;
}
