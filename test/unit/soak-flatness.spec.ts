/**
 * The soak's flatness check (scripts/soak/flatness.ts): a program's warm-up ends at its first full
 * GC or when its committed heap reached its working size, when that comes after the run's warm-up;
 * growth before it is not judged, growth after it is.
 */
import test from 'ava';
import { firstFullGcMs, growthOf, heapSettledMs } from '../../scripts/soak/flatness.js';
import type { Sample, Series } from '../../scripts/soak/sampler.js';

/** One sample a second for `seconds`: heap used, RSS and (if given) heap committed from the functions given. */
function series(
  seconds: number,
  heapKiB: (t: number) => number,
  rssKiB: (t: number) => number,
  heapTotalKiB: (t: number) => number = () => NaN,
): Series {
  const samples: Sample[] = [];
  for (let t = 0; t < seconds; t++) {
    samples.push({
      tMs: t * 1000,
      rssKiB: rssKiB(t),
      fds: 21,
      heapUsedKiB: heapKiB(t),
      heapTotalKiB: heapTotalKiB(t),
      liveTimers: 4,
      eventLoopP99Ms: NaN,
    });
  }
  return { name: 'agent', samples };
}

// Heap used climbs 9 -> 15 MiB until its first full GC at 600 s, then saws between 9 and 11.
const heap = (t: number): number => (t < 600 ? 9_000 + t * 10 : 9_000 + ((t - 600) % 100) * 20);

test('a full GC is a fall of heap used by 30% of its peak; scavenge-sized dips are not', (t) => {
  t.is(firstFullGcMs(series(900, heap, () => 60_000).samples), 600_000);
  t.is(
    firstFullGcMs(
      series(
        300,
        (s) => 9_000 + (s % 10) * 200,
        () => 60_000,
      ).samples,
    ),
    null,
    'dips of 18% are not a full GC',
  );
});

test('RSS that grows until the first full GC and is flat after it is flat', (t) => {
  const g = growthOf(
    series(900, heap, (s) => (s < 600 ? 60_000 + s * 20 : 72_000)),
    225_000,
  );
  t.is(g.warmUpMs, 600_000);
  t.is(g.firstFullGcMs, 600_000);
  t.deepEqual(g.problems, []);
});

test('RSS that keeps growing after the first full GC is not flat', (t) => {
  const g = growthOf(
    series(900, heap, (s) => 60_000 + s * 20),
    225_000,
  );
  t.is(g.warmUpMs, 600_000);
  t.is(g.problems.length, 1);
  t.regex(g.problems[0]!, /RSS/);
});

test('with no full GC in the run, the run’s warm-up stands and growth after it is judged', (t) => {
  const g = growthOf(
    series(
      400,
      (s) => 9_000 + s * 10,
      (s) => 60_000 + s * 20,
    ),
    100_000,
  );
  t.is(g.firstFullGcMs, null);
  t.is(g.warmUpMs, 100_000);
  t.is(g.problems.length, 1);
});

test('a full GC before the run’s warm-up does not shorten it', (t) => {
  const g = growthOf(
    series(
      400,
      (s) => (s < 50 ? 9_000 + s * 100 : 9_000),
      () => 60_000,
    ),
    100_000,
  );
  t.is(g.firstFullGcMs, null, 'the one at 50 s is in the first minute');
  t.is(g.warmUpMs, 100_000);
});

test('a full GC in the first minute (start-up) does not hide the first one after it', (t) => {
  // A full GC at 20 s (start-up garbage), then heap used climbs 9 -> 15 MiB until the next at 600 s;
  // RSS grows with it until then and is flat after.
  const startup = (s: number): number => (s < 20 ? 9_000 + s * 300 : heap(s));
  const g = growthOf(
    series(900, startup, (s) => (s < 600 ? 60_000 + s * 20 : 72_000)),
    225_000,
  );
  t.is(g.firstFullGcMs, 600_000);
  t.is(g.warmUpMs, 600_000);
  t.deepEqual(g.problems, []);
});

test('a first full GC too close to the end to judge from leaves the run’s warm-up', (t) => {
  const g = growthOf(
    series(
      400,
      (s) => (s < 395 ? 9_000 + s * 10 : 9_000),
      () => 60_000,
    ),
    100_000,
  );
  t.is(g.firstFullGcMs, 395_000);
  t.is(g.warmUpMs, 100_000);
  t.deepEqual(g.problems, []);
});

// Heap used saws between 11 and 15 MiB from the start (full GCs every 100 s).
const sawtooth = (t: number): number => 11_000 + (t % 100) * 40;
// Committed heap: the old generation grows 45 -> 49 MiB in 256 KiB pages until 600 s, then stays.
const settling = (t: number): number => 45_000 + Math.min(16, Math.floor(t / 37)) * 256;

test('the committed heap settles when it first comes within 1 MiB of its largest', (t) => {
  t.is(heapSettledMs(series(900, sawtooth, () => 96_000, settling).samples), 444_000);
  t.is(heapSettledMs(series(900, sawtooth, () => 96_000).samples), null, 'not sampled');
});

test('RSS that grows with the committed heap until it settles and is flat after it is flat', (t) => {
  const g = growthOf(
    series(900, sawtooth, (s) => 90_000 + Math.min(16, Math.floor(s / 37)) * 600, settling),
    225_000,
  );
  t.is(g.heapSettledMs, 444_000);
  t.is(g.warmUpMs, 444_000);
  t.deepEqual(g.problems, []);
});

test('RSS that keeps growing after the committed heap settled is not flat', (t) => {
  const g = growthOf(
    series(900, sawtooth, (s) => 90_000 + s * 20, settling),
    225_000,
  );
  t.is(g.warmUpMs, 444_000);
  t.is(g.problems.length, 1);
  t.regex(g.problems[0]!, /RSS/);
});

test('a committed heap that grows to the end (a leak) does not move the warm-up, and its RSS growth is judged', (t) => {
  const g = growthOf(
    series(
      900,
      (s) => 11_000 + s * 10,
      (s) => 90_000 + s * 20,
      (s) => 45_000 + s * 20,
    ),
    225_000,
  );
  t.is(g.heapSettledMs, 848_000, 'within 1 MiB of the end, less than a third of the judged time before it');
  t.is(g.warmUpMs, 225_000);
  t.is(g.problems.length, 1);
  t.regex(g.problems[0]!, /RSS/);
});
