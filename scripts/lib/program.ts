/**
 * Spawn one of peerlink's real programs (dist/agent/cli/*.js) and follow its pino JSON log,
 * for the demo and the integration tests.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/ root (this file is dist/scripts/lib/program.js once built). */
export const DIST = join(here, '..', '..');
export const PROGRAMS = {
  server: join(DIST, 'agent', 'cli', 'peerlink-server.js'),
  agent: join(DIST, 'agent', 'cli', 'peerlink-agent.js'),
  client: join(DIST, 'agent', 'cli', 'peerlink.js'),
  provision: join(DIST, 'scripts', 'provision.js'),
} as const;

export type LogLine = Record<string, unknown> & { msg?: string };

export interface Program {
  readonly child: ChildProcess;
  readonly lines: LogLine[];
  readonly stderr: string[];
  /** Resolve with the first log line (past or future) matching, or reject after timeoutMs. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export function startProgram(
  which: keyof typeof PROGRAMS,
  args: readonly string[],
  opts: {
    onLine?: (l: LogLine) => void;
    stdio?: SpawnOptions['stdio'];
    env?: NodeJS.ProcessEnv;
    netns?: string;
    /** Flags for node itself, before the script (V8 heap flags NODE_OPTIONS does not accept). */
    nodeArgs?: readonly string[];
  } = {},
): Program {
  // E.g. PEERLINK_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the programs a bench runs.
  const envNodeArgs = process.env.PEERLINK_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const command = [process.execPath, ...(opts.nodeArgs ?? []), ...envNodeArgs, PROGRAMS[which], ...args];
  // In the NAT lab, each program runs inside its host's network namespace.
  const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...command] : command;
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
  });
  const lines: LogLine[] = [];
  const stderr: string[] = [];
  const waiters = new Set<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : null))));
  const logStream = which === 'client' ? child.stderr : child.stdout;
  if (logStream) {
    createInterface({ input: logStream }).on('line', (text) => {
      let l: LogLine;
      try {
        l = JSON.parse(text) as LogLine;
      } catch {
        stderr.push(text);
        return;
      }
      lines.push(l);
      opts.onLine?.(l);
      for (const w of waiters)
        if (w.pred(l)) {
          waiters.delete(w);
          w.resolve(l);
        }
    });
  }
  if (which !== 'client' && child.stderr) createInterface({ input: child.stderr }).on('line', (t) => stderr.push(t));
  return {
    child,
    lines,
    stderr,
    exited,
    waitFor(pred, timeoutMs = 10_000) {
      const past = lines.find(pred);
      if (past) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (l: LogLine) => (clearTimeout(t), resolve(l)) };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`${which}: no matching log line within ${timeoutMs} ms; stderr: ${stderr.join('\n')}`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    async stop(graceMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exited;
        clearTimeout(t);
        return code;
      }
      return exited;
    },
  };
}
