/** Run a command to completion and collect its exit code and output (tests of whole programs). */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * A whole-program test's child may hang (a CI run once sat 120 s on a spec with nothing to say why):
 * past `timeoutMs` the child's process group gets SIGTERM (a program's own clean-up runs, e.g. the
 * soak stopping what it started), SIGKILL 3 s later, and the run resolves with code null and a
 * stderr line naming the command, so the test fails with a message instead of stalling the suite.
 */
export const RUN_PROCESS_TIMEOUT_MS = 90_000;
const RUN_PROCESS_KILL_GRACE_MS = 3_000;

// A child in its own group no longer gets the terminal's Ctrl-C: the groups still running go with
// this process, however it ends.
const liveGroups = new Set<number>();
process.once('exit', () => {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

export function runProcess(command: string, args: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    // Its own process group, so that what it started goes with it.
    const child = spawn(command, args, { ...(opts.cwd ? { cwd: opts.cwd } : {}), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid) liveGroups.add(child.pid);
    let stdout = '';
    let stderr = '';
    const timeoutMs = opts.timeoutMs ?? RUN_PROCESS_TIMEOUT_MS;
    const signalGroup = (signal: NodeJS.Signals): void => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        /* the group is gone */
      }
    };
    let grace: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      stderr += `\n[test harness] killed after ${timeoutMs} ms: ${command} ${args.join(' ')}\n`;
      signalGroup('SIGTERM');
      grace = setTimeout(() => signalGroup('SIGKILL'), RUN_PROCESS_KILL_GRACE_MS);
    }, timeoutMs);
    const done = (): void => {
      if (child.pid) liveGroups.delete(child.pid);
      clearTimeout(deadline);
      if (grace) clearTimeout(grace);
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => (done(), reject(err)));
    child.on('close', (code) => (done(), resolve({ code, stdout, stderr })));
  });
}

/** Run a Node script with this process's node. */
export function runNode(script: string, args: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return runProcess(process.execPath, [script, ...args], opts);
}

export interface StdioRun {
  readonly code: number | null;
  readonly stderr: string;
  readonly bytes: number;
  readonly sha256: string;
}

/** Run a Node script, feed `input` to its stdin (then EOF), and checksum what comes out. */
export function runNodeStdio(
  script: string,
  args: readonly string[],
  input: Buffer,
  onChild?: (kill: () => void) => void,
): Promise<StdioRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    onChild?.(() => child.kill('SIGKILL'));
    const hash = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    child.once('close', (code) => resolve({ code, stderr, bytes, sha256: hash.digest('hex') }));
  });
}
