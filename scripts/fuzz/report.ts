/**
 * The fuzz run's verdict and its last line, which the short spec and CI parse:
 *   fuzz: <N> packets, <C> crashes, answered/received <ratio>, RSS +<x> MiB, fds +<y>, registrations lost <L>
 * answered/received: bytes the server sent back to the fuzzer's UDP sockets / bytes the fuzzer sent
 * to the server's UDP ports (P6: never above 1). RSS and fds: growth of server plus agent, before
 * to after. registrations lost: the agent's lost registrations plus the client's failed connects.
 */

export interface FuzzFigures {
  readonly packets: number;
  readonly crashes: number;
  readonly answeredRatio: number;
  readonly rssGrowthMiB: number;
  readonly fdGrowth: number;
  readonly lost: number;
}

const LAST_LINE =
  /^fuzz: (\d+) packets, (\d+) crashes, answered\/received (\d+(?:\.\d+)?), RSS \+(-?\d+(?:\.\d+)?) MiB, fds \+(-?\d+), registrations lost (\d+)$/;

export function formatLastLine(f: FuzzFigures): string {
  return `fuzz: ${f.packets} packets, ${f.crashes} crashes, answered/received ${f.answeredRatio.toFixed(4)}, RSS +${f.rssGrowthMiB.toFixed(1)} MiB, fds +${f.fdGrowth}, registrations lost ${f.lost}`;
}

/** The figures from a run's output (its last non-empty line); null if that line is not in the form. */
export function parseLastLine(output: string): FuzzFigures | null {
  const last = output.trimEnd().split('\n').at(-1) ?? '';
  const m = LAST_LINE.exec(last);
  if (!m) return null;
  return Object.freeze({
    packets: Number(m[1]),
    crashes: Number(m[2]),
    answeredRatio: Number(m[3]),
    rssGrowthMiB: Number(m[4]),
    fdGrowth: Number(m[5]),
    lost: Number(m[6]),
  });
}

/** Why the run fails (empty: it passes). Growth of RSS and fds is reported, judged by whoever reads it. */
export function verdict(f: FuzzFigures): string[] {
  const problems: string[] = [];
  if (f.crashes !== 0) problems.push(`${f.crashes} program(s) crashed`);
  if (f.lost !== 0) problems.push(`${f.lost} registration(s) or connect(s) lost`);
  if (!(f.answeredRatio <= 1)) problems.push(`answered/received ${f.answeredRatio} > 1 (amplification)`);
  return problems;
}

/** A table row: name, then right-aligned numbers. */
export function row(name: string, ...cells: (string | number)[]): string {
  return `  ${name.padEnd(30)}${cells.map((c) => String(c).padStart(12)).join('')}`;
}
