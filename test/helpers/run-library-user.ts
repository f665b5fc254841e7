/**
 * Run test/helpers/library-user.js in its own process with `job`; resolves once it reported (or
 * exited) and then had `exitWithinMs` to end: how it ended, its last report line, all its output.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { DIST } from '../../scripts/lib/program.js';

export interface LibraryUserReport {
  readonly answers?: string[];
  readonly reused?: boolean[];
  readonly handles?: string[];
}

export async function runLibraryUser(
  t: { teardown(fn: () => void): void },
  job: object,
  exitWithinMs: number,
): Promise<{ exited: number | string; report: LibraryUserReport; out: string }> {
  const child = spawn(process.execPath, [join(DIST, 'test', 'helpers', 'library-user.js'), JSON.stringify(job)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  const reported = new Promise<void>((resolve) =>
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve();
    }),
  );
  const exit = new Promise<number | string>((resolve) => child.once('exit', (code) => resolve(code ?? 'killed')));
  await Promise.race([reported, exit]);
  // From the report (written after stop() returned) the process has exitWithinMs to end.
  const exited = await Promise.race([exit, new Promise<string>((r) => setTimeout(() => r('still running'), exitWithinMs).unref())]);
  const report = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LibraryUserReport;
  return { exited, report, out };
}
