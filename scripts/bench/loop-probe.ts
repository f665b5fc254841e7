/**
 * A preload (`node --import dist/scripts/bench/loop-probe.js`) the web-page bench gives the agent, to
 * measure what the agent's GC costs its event loop (issue 15, the agent's `--single-threaded-gc`):
 * the event-loop delay (perf_hooks monitorEventLoopDelay, at RESOLUTION_MS) and
 * every GC's pause (PerformanceObserver 'gc' entries: the time the main thread stood in the GC).
 * SIGUSR2 starts the window (clears what the warm-up left); at exit it writes the window's figures
 * as JSON to $PEERLINK_LOOP_PROBE_FILE (or PEERLINK_LOOP_PROBE_DIR, below). Bench-only: the agent's own code knows nothing of it.
 */
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';

// 1 ms: finer than the default 10 ms, so a few-ms GC pause shows in the percentiles.
const RESOLUTION_MS = 1;
// Or, for a bench that starts several programs (e.g. PEERLINK_NODE_ARGS="--import …/loop-probe.js" on
// tunnel-ab.js), PEERLINK_LOOP_PROBE_DIR: a file per process, DIR/SCRIPT-PID.json, over its whole life.
const probeDir = process.env.PEERLINK_LOOP_PROBE_DIR;
const file =
  process.env.PEERLINK_LOOP_PROBE_FILE ??
  (probeDir ? join(probeDir, `${basename(process.argv[1] ?? 'node', '.js')}-${process.pid}.json`) : undefined);

if (file) {
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  let pauses: { kind: number; ms: number }[] = [];
  let heapMaxBytes = 0;
  const record = (entries: readonly PerformanceEntry[]): void => {
    for (const e of entries) {
      const kind = (e as { detail?: { kind?: number } }).detail?.kind ?? 0;
      pauses.push({ kind, ms: e.duration });
    }
    heapMaxBytes = Math.max(heapMaxBytes, process.memoryUsage().heapUsed);
  };
  const obs = new PerformanceObserver((list) => record(list.getEntries()));
  obs.observe({ entryTypes: ['gc'] });
  process.on('SIGUSR2', () => {
    delay.reset();
    pauses = [];
    heapMaxBytes = 0;
  });
  process.on('exit', () => {
    record(obs.takeRecords()); // the entries not yet delivered
    const ms = (ns: number): number => Number((ns / 1e6).toFixed(2));
    const of = (k: number): number[] => pauses.filter((p) => p.kind === k).map((p) => p.ms);
    const stats = (xs: number[]): { n: number; totalMs: number; maxMs: number } => ({
      n: xs.length,
      totalMs: Number(xs.reduce((a, b) => a + b, 0).toFixed(1)),
      maxMs: Number(Math.max(0, ...xs).toFixed(2)),
    });
    const mem = process.memoryUsage();
    const out = {
      loopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      gc: {
        minor: stats(of(constants.NODE_PERFORMANCE_GC_MINOR)),
        major: stats(of(constants.NODE_PERFORMANCE_GC_MAJOR)),
        incremental: stats(of(constants.NODE_PERFORMANCE_GC_INCREMENTAL)),
        all: stats(pauses.map((p) => p.ms)),
      },
      heapUsedMaxMiB: Number((heapMaxBytes / 2 ** 20).toFixed(1)),
      heapTotalMiB: Number((mem.heapTotal / 2 ** 20).toFixed(1)),
      rssMiB: Number((mem.rss / 2 ** 20).toFixed(1)),
    };
    try {
      writeFileSync(file, `${JSON.stringify(out)}\n`);
    } catch {
      // A bench aid: nothing to do if its file cannot be written.
    }
  });
}
