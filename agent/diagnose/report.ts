/** A diagnose report: one line per check with a verdict, what was found, and a suggested fix. */

export const VERDICTS = ['ok', 'warn', 'fail', 'skip'] as const;
export type Verdict = (typeof VERDICTS)[number];

export interface CheckResult {
  readonly id: string;
  readonly title: string;
  readonly verdict: Verdict;
  /** What was found, in plain words. */
  readonly summary: string;
  /** What a technician should do about it (absent when nothing). */
  readonly fix?: string;
  /** Machine-readable facts for --json. */
  readonly data?: Readonly<Record<string, unknown>>;
}

export interface DiagnoseReport {
  readonly equipmentId: string | null;
  readonly server: string | null;
  readonly checks: readonly CheckResult[];
  /** No check failed. */
  readonly ok: boolean;
}

const LABEL: Record<Verdict, string> = { ok: 'OK  ', warn: 'WARN', fail: 'FAIL', skip: 'SKIP' };

export function formatReport(r: DiagnoseReport): string {
  const width = Math.max(...r.checks.map((c) => c.title.length));
  const lines = [`peerlink-agent diagnose: device ${r.equipmentId ?? '(unknown)'}, server ${r.server ?? '(unknown)'}`, ''];
  for (const c of r.checks) {
    lines.push(`  ${LABEL[c.verdict]}  ${c.title.padEnd(width)}  ${c.summary}`);
    if (c.fix) lines.push(`  ${' '.repeat(4)}  ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  const fails = r.checks.filter((c) => c.verdict === 'fail').length;
  const warns = r.checks.filter((c) => c.verdict === 'warn').length;
  lines.push(
    '',
    fails === 0
      ? `verdict: reachable${warns ? `, with ${warns} warning${warns > 1 ? 's' : ''}` : ''}`
      : `verdict: ${fails} problem${fails > 1 ? 's' : ''} to fix${warns ? `, ${warns} warning${warns > 1 ? 's' : ''}` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}
