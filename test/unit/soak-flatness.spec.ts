/**
 * The soak's flatness check (scripts/soak/flatness.ts): a program's warm-up ends at its first full
 * GC when that comes after the run's warm-up; growth before it is not judged, growth after it is.
 */
import test from 'ava';
import { firstFullGcMs, growthOf } from '../../scripts/soak/flatness.js';
import type { Sample, Series } from '../../scripts/soak/sampler.js';

/** One sample a second for `seconds`: heap used and RSS from the functions given. */
function series(seconds: number, heapKiB: (t: number) => number, rssKiB: (t: number) => number): Series {
  const samples: Sample[] = [];
  for (let t = 0; t < seconds; t++) {
    samples.push({
      tMs: t * 1000,
      rssKiB: rssKiB(t),
      fds: 21,
      heapUsedKiB: heapKiB(t),
      heapTotalKiB: NaN,
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
  t.is(g.firstFullGcMs, 50_000);
  t.is(g.warmUpMs, 100_000);
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
