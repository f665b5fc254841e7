/**
 * A real client during the fuzz run: every CONNECT_INTERVAL_MS it runs `peerlink connect ...
 * --stdio` against the agent's echo service, sends a line and expects it back. One at a time
 * (never a pile-up on a slow machine); each attempt is bounded by CONNECT_TIMEOUT_MS.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PROGRAMS } from '../lib/program.js';
import type { LoopbackSetup } from '../lib/loopback-setup.js';

export const CONNECT_INTERVAL_MS = 1_500;
export const CONNECT_TIMEOUT_MS = 20_000;
const FAILURES_KEPT_MAX = 10;

export interface ProberStats {
  readonly attempts: number;
  readonly successes: number;
  readonly failures: number;
  /** The first few failures, in words (exit code, stderr tail). */
  readonly failureNotes: readonly string[];
}

export interface ClientProber {
  start(): void;
  /** Stop starting attempts; wait for the one in flight. */
  stop(): Promise<void>;
  stats(): ProberStats;
}

export interface ClientProberOptions {
  readonly setup: LoopbackSetup;
  readonly service: string;
  readonly intervalMs?: number;
  /** Connect through this TLS port instead of the setup's (another node of a fleet). */
  readonly tlsPort?: number;
}

export function createClientProber(input: ClientProberOptions): ClientProber {
  const o = Object.freeze({ ...input, intervalMs: input.intervalMs ?? CONNECT_INTERVAL_MS });
  const s = o.setup;
  const args = [
    PROGRAMS.client,
    'connect',
    s.equipmentId,
    '--server',
    `127.0.0.1:${o.tlsPort ?? s.tlsPort}`,
    '--server-name',
    'localhost',
    '--ca',
    s.caFile,
    '--password-file',
    s.passwordFile,
    '--service',
    o.service,
    '--stdio',
  ];
  let attempts = 0;
  let successes = 0;
  const failureNotes: string[] = [];
  let running = false;
  let loop: Promise<void> = Promise.resolve();

  function attempt(): Promise<boolean> {
    const line = `${randomBytes(16).toString('hex')}\n`;
    return new Promise((resolve) => {
      const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), CONNECT_TIMEOUT_MS);
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.stdin.on('error', () => undefined);
      child.stdin.end(line);
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const ok = code === 0 && out === line;
        if (!ok && failureNotes.length < FAILURES_KEPT_MAX) {
          failureNotes.push(
            `exit ${code ?? signal}, echoed ${out === line ? 'ok' : JSON.stringify(out.slice(0, 40))}: ${err.trim().split('\n').slice(-2).join(' | ')}`,
          );
        }
        resolve(ok);
      });
    });
  }

  return {
    start() {
      if (running) return;
      running = true;
      loop = (async () => {
        while (running) {
          const began = performance.now();
          attempts++;
          if (await attempt()) successes++;
          const waitMs = o.intervalMs - (performance.now() - began);
          if (running && waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
        }
      })();
    },
    async stop() {
      running = false;
      await loop;
    },
    stats: () => Object.freeze({ attempts, successes, failures: attempts - successes, failureNotes: [...failureNotes] }),
  };
}
