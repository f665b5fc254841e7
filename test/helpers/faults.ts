/**
 * Plumbing for the fault specs (test/faults): a client run whose exit, last stderr line and
 * duration are kept (what the user sees), SIGSTOP/SIGCONT of a program, and one figure line per
 * measurement in the spec's log ("fault-figure: ..."), which docs/faults.md quotes.
 */
import { spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { PROGRAMS, type Program } from '../../scripts/lib/program.js';

export interface ClientRun {
  readonly code: number | null;
  readonly stdout: string;
  /** The client's last stderr line: what the user reads. */
  readonly said: string;
  readonly ms: number;
}

/** `peerlink <args>` with `input` on stdin; killed after `timeoutMs` (a hang shows as code null). */
export function runClient(args: readonly string[], input: string, timeoutMs = 60_000): { done: Promise<ClientRun>; kill(): void } {
  const began = performance.now();
  const child = spawn(process.execPath, [PROGRAMS.client, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.on('error', () => undefined);
  child.stdin.end(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<ClientRun>((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      const lines = stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('{'));
      resolve({ code, stdout, said: lines.at(-1) ?? '', ms: Math.round(performance.now() - began) });
    }),
  );
  return { done, kill: () => child.kill('SIGKILL') };
}

export function pause(p: Program): void {
  p.child.kill('SIGSTOP');
}

export function resume(p: Program): void {
  p.child.kill('SIGCONT');
}

/** SIGKILL and wait for the exit. */
export async function killHard(p: Program): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGKILL');
  await p.exited;
}

/** One measured figure, printed in the spec's log for docs/faults.md. */
export function figure(t: ExecutionContext, what: string, value: string): void {
  t.log(`fault-figure: ${what}: ${value}`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
