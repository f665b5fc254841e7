/**
 * Whether a program's lines are flat, and the soak's last line:
 *   soak: <R> registrations, <L> lost, <S>% connects ok, RSS +<x>%, fds +<y>
 * Flat: RSS and descriptors at the end within FLAT_TOLERANCE (5%) of their value after warm-up, and
 * live timers no more than that (plus TIMERS_IN_FLIGHT_SLACK: requests in flight hold their own).
 * "After warm-up" and "at the end" are each the median of WINDOW_SAMPLES samples, so one sample taken
 * during a GC or while a connection is open does not decide; for timers, the least of those samples. RSS +x% and fds +y are the largest growth over the
 * programs watched (servers and the agent).
 *
 * Each program's warm-up ends at the run's warm-up time, at its first full GC after start-up or when its heap settled (below),
 * whichever is latest.
 * Until V8's first mark-compact, everything a program has let go of is still held, and with it the
 * native memory of its wrappers (a TLS connection's OpenSSL objects are freed only when V8 collects
 * their JavaScript side): the agent, serving one request every few seconds, let its heap grow from
 * 9 to 15 MiB and its RSS by ~15% over its first ~230 requests (11 minutes) before its first full GC,
 * and stayed flat from then on (`npm run soak -- --minutes 30`, docs/faults.md). RSS measured from
 * before that point measures when V8 first collects, not a leak; a leak still shows from after it.
 * A full GC is seen as heap used falling by FULL_GC_DROP of its peak so far (a scavenge frees at
 * most the young generation, a few MiB). A program with no full GC in the run, or one too late to
 * leave 2 x WINDOW_SAMPLES samples after it, keeps the run's warm-up, and its line says so.
 *
 * Nor does a warm-up end before V8's heap has reached its working size: the first sample whose
 * committed heap is within HEAP_SETTLED_SLACK_KIB of the largest the run saw, when that leaves a
 * third of the judged time after it (HEAP_SETTLED_MIN_SHARE). The server's old
 * generation, with the young one fixed (systemd/peerlink-server.service), grew 9.5 -> 13.2 MiB
 * committed over its first ~640 s at a constant load and stayed there, heap used coming back to
 * ~11 MiB at each full GC (docs/faults.md). A heap that grows to the end (a leak of JavaScript
 * objects) settles too late to count, so the earlier warm-up stands and the growth is judged;
 * growth after the heap settled (a native leak, descriptors, timers) is judged as before.
 */
import type { Sample, Series } from './sampler.js';

export const FLAT_TOLERANCE = 0.05;
const WINDOW_SAMPLES = 5;
/** Descriptors and timers of one connection in flight, which a sample may catch. */
const IN_FLIGHT_SLACK = 2;
/**
 * Timers of the requests a server has in flight at once: on a loaded machine (CI, 2 cores) a node
 * with thousands of registrations answered late held 8 -> 11 in the 90 s soak. A timer leaked per
 * request served still shows: the short soak serves ~15 connections, the full one hundreds.
 */
const TIMERS_IN_FLIGHT_SLACK = 4;
/** Heap used falling by this share of its peak so far: a full (mark-compact) GC. */
export const FULL_GC_DROP = 0.3;
/** A full GC in a program's first minute is its start-up's, not the first of its steady state. */
export const START_UP_MS = 60_000;

/** Committed heap within this of the run's largest: V8's pages come 256 KiB at a time. */
export const HEAP_SETTLED_SLACK_KIB = 1024;
/**
 * The heap's settling ends a warm-up only when at least this share of the time after the run's
 * warm-up is left after it. A heap that keeps growing (a leak) settles HEAP_SETTLED_SLACK_KIB before
 * the end: if that is less than a third of the judged time, the earlier warm-up stands and the
 * growth is judged; a leak slow enough to settle earlier grows under 3 MiB over the judged time,
 * within 5% of a 60 MiB RSS from the run's warm-up too.
 */
const HEAP_SETTLED_MIN_SHARE = 1 / 3;

/** When the program's committed heap first came within HEAP_SETTLED_SLACK_KIB of the largest in the run, or null. */
export function heapSettledMs(samples: readonly Sample[]): number | null {
  const known = samples.filter((s) => Number.isFinite(s.heapTotalKiB));
  if (known.length === 0) return null;
  const max = Math.max(...known.map((s) => s.heapTotalKiB));
  return known.find((s) => s.heapTotalKiB >= max - HEAP_SETTLED_SLACK_KIB)!.tMs;
}

/**
 * When the program's heap used first fell by FULL_GC_DROP of its peak so far, counting from fromMs,
 * or null. growthOf counts from START_UP_MS: a full GC in a program's first minute frees its
 * start-up's garbage, and the heap grows again to V8's limit before the next (the agent once: a full
 * GC at 22 s, the next at 458 s; its RSS +6.0% from 225 s, +1.9% from 458 s; docs/faults.md).
 */
export function firstFullGcMs(samples: readonly Sample[], fromMs = 0): number | null {
  let peak = 0;
  for (const s of samples) {
    if (s.tMs < fromMs || !Number.isFinite(s.heapUsedKiB)) continue;
    if (peak > 0 && s.heapUsedKiB <= peak * (1 - FULL_GC_DROP)) return s.tMs;
    peak = Math.max(peak, s.heapUsedKiB);
  }
  return null;
}

export interface Growth {
  readonly name: string;
  /** Where this program's warm-up ended: the run's, or its first full GC when that came later. */
  readonly warmUpMs: number;
  /** Its first full GC after start-up (START_UP_MS), or null when none (then its RSS still holds what that would free). */
  readonly firstFullGcMs: number | null;
  /** When its committed heap reached its working size (heapSettledMs), or null when not sampled. */
  readonly heapSettledMs: number | null;
  readonly rssBaseKiB: number;
  readonly rssEndKiB: number;
  readonly rssPct: number;
  readonly fdsBase: number;
  readonly fdsEnd: number;
  readonly timersBase: number;
  readonly timersEnd: number;
  /**
   * Heap used, least over the first and the second half after warm-up: the floor a full GC brings it
   * back to (a half is long enough to hold one), which rises with a leak of JavaScript objects
   * wherever the heap's sawtooth stands at the ends.
   * Reported, not judged (RSS is).
   */
  readonly heapFloorBaseKiB: number;
  readonly heapFloorEndKiB: number;
  readonly problems: readonly string[];
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.floor(s.length / 2)]!;
};

/** Timers come and go with the work in flight (a Redis command's timeout, a handshake deadline): a leak raises their floor. */
const floor = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x));
  return s.length ? Math.min(...s) : NaN;
};

export function growthOf(series: Series, runWarmUpMs: number): Growth {
  const fullGc = firstFullGcMs(series.samples, Math.min(runWarmUpMs, START_UP_MS));
  const settled = heapSettledMs(series.samples);
  // Each only when enough of the run is left after it to judge; otherwise it does not move the warm-up.
  const judgeable = (at: number | null): at is number =>
    at !== null && series.samples.filter((s) => s.tMs >= at).length >= 2 * WINDOW_SAMPLES;
  const lastMs = series.samples.at(-1)?.tMs ?? 0;
  const settledJudgeable = judgeable(settled) && lastMs - settled >= (lastMs - runWarmUpMs) * HEAP_SETTLED_MIN_SHARE;
  const warmUpMs = Math.max(runWarmUpMs, ...[fullGc].filter(judgeable), ...(settledJudgeable && settled !== null ? [settled] : []));
  const after = series.samples.filter((s) => s.tMs >= warmUpMs);
  const base = after.slice(0, WINDOW_SAMPLES);
  const end = after.slice(-WINDOW_SAMPLES);
  const m = (xs: Sample[], f: (s: Sample) => number): number => median(xs.map(f));
  const g = {
    rssBaseKiB: m(base, (s) => s.rssKiB),
    rssEndKiB: m(end, (s) => s.rssKiB),
    fdsBase: m(base, (s) => s.fds),
    fdsEnd: m(end, (s) => s.fds),
    timersBase: floor(base.map((s) => s.liveTimers)),
    timersEnd: floor(end.map((s) => s.liveTimers)),
    heapFloorBaseKiB: floor(after.slice(0, Math.floor(after.length / 2)).map((s) => s.heapUsedKiB)),
    heapFloorEndKiB: floor(after.slice(Math.floor(after.length / 2)).map((s) => s.heapUsedKiB)),
  };
  const problems: string[] = [];
  if (after.length < 2 * WINDOW_SAMPLES) problems.push(`${series.name}: only ${after.length} samples after warm-up`);
  const rssPct = ((g.rssEndKiB - g.rssBaseKiB) / g.rssBaseKiB) * 100;
  if (!(rssPct <= FLAT_TOLERANCE * 100))
    problems.push(`${series.name}: RSS ${g.rssBaseKiB} -> ${g.rssEndKiB} KiB (+${rssPct.toFixed(1)}%)`);
  if (!(g.fdsEnd <= Math.max(g.fdsBase * (1 + FLAT_TOLERANCE), g.fdsBase + IN_FLIGHT_SLACK)))
    problems.push(`${series.name}: fds ${g.fdsBase} -> ${g.fdsEnd}`);
  if (
    Number.isFinite(g.timersBase) &&
    !(g.timersEnd <= Math.max(g.timersBase * (1 + FLAT_TOLERANCE), g.timersBase + TIMERS_IN_FLIGHT_SLACK))
  ) {
    problems.push(`${series.name}: live timers ${g.timersBase} -> ${g.timersEnd}`);
  }
  return Object.freeze({ name: series.name, warmUpMs, firstFullGcMs: fullGc, heapSettledMs: settled, ...g, rssPct, problems });
}

export interface SoakFigures {
  readonly registrations: number;
  readonly lost: number;
  readonly connectsOkPct: number;
  readonly rssPct: number;
  readonly fds: number;
}

const LAST_LINE = /^soak: (\d+) registrations, (\d+) lost, (\d+(?:\.\d+)?)% connects ok, RSS \+(-?\d+(?:\.\d+)?)%, fds \+(-?\d+)$/;

export function formatLastLine(f: SoakFigures): string {
  return `soak: ${f.registrations} registrations, ${f.lost} lost, ${f.connectsOkPct.toFixed(1)}% connects ok, RSS +${f.rssPct.toFixed(1)}%, fds +${f.fds}`;
}

export function parseLastLine(output: string): SoakFigures | null {
  const m = LAST_LINE.exec(output.trimEnd().split('\n').at(-1) ?? '');
  if (!m) return null;
  return Object.freeze({
    registrations: Number(m[1]),
    lost: Number(m[2]),
    connectsOkPct: Number(m[3]),
    rssPct: Number(m[4]),
    fds: Number(m[5]),
  });
}
