/**
 * Samples each watched program over time: RSS and descriptor count from /proc, heap used and committed, and live
 * timers from its resource probe (resource-probe.ts), and for the servers the event-loop delay p99
 * from their own metrics (prom-client's monitorEventLoopDelay, reset at each scrape, so each sample
 * is the p99 of the interval since the one before).
 */
import { readFileSync } from 'node:fs';
import { sampleProcess } from '../fuzz/process-stats.js';
import { fetchMetrics } from '../fuzz/server-metrics.js';
import type { Watched } from './systems.js';

/** One V8 heap space (v8.getHeapSpaceStatistics()), in KiB. */
export interface SpaceKiB {
  /** Committed (space_size). */
  readonly size: number;
  readonly used: number;
  /** Resident (physical_space_size): what of the space counts in RSS. */
  readonly physical: number;
}

export interface Sample {
  readonly tMs: number;
  readonly rssKiB: number;
  readonly fds: number;
  readonly heapUsedKiB: number;
  /** What V8 has committed for the heap (young and old generations). */
  readonly heapTotalKiB: number;
  /** Memory of C++ objects bound to JavaScript ones (process.memoryUsage().external). */
  readonly externalKiB?: number;
  /** Per V8 heap space with anything committed: new_space, old_space, code_space, large_object_space, ... */
  readonly spaces?: Readonly<Record<string, SpaceKiB>>;
  readonly liveTimers: number;
  /** Servers only (NaN for the agent). */
  readonly eventLoopP99Ms: number;
}

export interface Series {
  readonly name: string;
  readonly samples: Sample[];
}

interface ProbeDoc {
  heapUsedBytes: number;
  heapTotalBytes?: number;
  externalBytes?: number;
  spaces?: Record<string, { size: number; used: number; physical: number }>;
  liveTimers: number;
}

const kib = (bytes: number): number => Math.round(bytes / 1024);

function spacesKiB(spaces: ProbeDoc['spaces']): Record<string, SpaceKiB> | undefined {
  if (!spaces) return undefined;
  const out: Record<string, SpaceKiB> = {};
  for (const [name, sp] of Object.entries(spaces)) out[name] = { size: kib(sp.size), used: kib(sp.used), physical: kib(sp.physical) };
  return out;
}

function probe(file: string): ProbeDoc | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ProbeDoc;
  } catch {
    return null;
  }
}

function metricValue(m: ReadonlyMap<string, number>, name: string): number {
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) return v;
  return NaN;
}

export interface Sampler {
  start(): void;
  stop(): Promise<void>;
  readonly series: readonly Series[];
}

export function createSampler(watched: readonly Watched[], intervalMs: number, t0: number): Sampler {
  const series: Series[] = watched.map((w) => ({ name: w.name, samples: [] }));
  let timer: NodeJS.Timeout | null = null;
  let busy: Promise<void> = Promise.resolve();
  const once = async (): Promise<void> => {
    await Promise.all(
      watched.map(async (w, i) => {
        const pid = w.program.child.pid;
        if (pid === undefined || w.program.child.exitCode !== null) return;
        let proc;
        try {
          proc = sampleProcess(pid);
        } catch {
          return;
        }
        const p = probe(w.probeFile);
        let loopMs = NaN;
        if (w.metricsPort !== undefined) {
          try {
            loopMs = metricValue(await fetchMetrics(w.metricsPort), 'peerlink_nodejs_eventloop_lag_p99_seconds') * 1000;
          } catch {
            // a slow scrape: no figure this round
          }
        }
        series[i]!.samples.push({
          tMs: Date.now() - t0,
          rssKiB: proc.rssKiB,
          fds: proc.fds,
          heapUsedKiB: p ? Math.round(p.heapUsedBytes / 1024) : NaN,
          heapTotalKiB: p?.heapTotalBytes !== undefined ? kib(p.heapTotalBytes) : NaN,
          externalKiB: p?.externalBytes !== undefined ? kib(p.externalBytes) : NaN,
          spaces: spacesKiB(p?.spaces),
          liveTimers: p ? p.liveTimers : NaN,
          eventLoopP99Ms: loopMs,
        });
      }),
    );
  };
  return {
    series,
    start() {
      timer = setInterval(() => {
        busy = busy.then(once);
      }, intervalMs);
    },
    async stop() {
      if (timer) clearInterval(timer);
      await busy;
    },
  };
}
