/**
 * The system under fuzz: a throwaway PKI (scripts/lib/loopback-setup.ts), the real
 * peerlink-server with its probe port and metrics on, the real peerlink-agent registering with its
 * reverse port on, and a TCP echo service behind the agent. Each program's log is counted by
 * level; only warnings and worse are kept (the fuzz run must not drown in info lines). A program
 * that exits before `stop()` is a crash.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { createLoopbackSetup, type LoopbackSetup } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { startProgram, type LogLine, type Program } from '../lib/program.js';

export const ECHO_SERVICE = 'echo';
/** pino's level numbers. */
const WARN_LEVEL = 40;
const KEPT_WARNINGS_MAX = 40;
const START_TIMEOUT_MS = 20_000;
/** The agent's own minimum (agent/device/settings.ts MIN_REGISTER_INTERVAL_MS): registrations during a run are few. */
export const FUZZ_REGISTER_INTERVAL_MS = 15_000;

export type ProgramName = 'server' | 'agent';

export interface Crash {
  readonly program: ProgramName;
  readonly code: number | null;
  readonly signal: string | null;
  readonly atMs: number;
}

export interface LogTally {
  readonly byLevel: Readonly<Record<string, number>>;
  readonly warnings: readonly string[];
}

export interface SystemUnderFuzz {
  readonly setup: LoopbackSetup;
  readonly probePort: number;
  readonly metricsPort: number;
  readonly reversePort: number;
  readonly pids: Readonly<Record<ProgramName, number>>;
  readonly server: Program;
  readonly agent: Program;
  crashes(): readonly Crash[];
  logs(program: ProgramName): LogTally;
  /** Lines the agent logged with this exact message, so far. */
  agentLines(msg: string): readonly LogLine[];
  stop(): Promise<void>;
}

export interface SystemOptions {
  readonly dir: string;
}

/** Replace the generated settings' log level (the loopback setup writes info). */
async function setLogLevel(file: string, level: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  if (!/^log_level = "info"$/m.test(text)) throw new Error(`${file}: no log_level line to change`);
  await writeFile(file, text.replace(/^log_level = "info"$/m, `log_level = "${level}"`));
}

function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })),
  );
}

export async function startSystem(input: SystemOptions): Promise<SystemUnderFuzz> {
  const o = Object.freeze({ dir: input.dir });
  const t0 = performance.now();
  const echo = await echoServer();
  const [probePort, metricsPort] = [await freePort(), await freePort()];
  const setup = await createLoopbackSetup({
    dir: o.dir,
    services: { [ECHO_SERVICE]: `127.0.0.1:${echo.port}` },
    registerIntervalMs: FUZZ_REGISTER_INTERVAL_MS,
    serverExtra: [
      '[probe]',
      `port = ${probePort}`,
      '[metrics]',
      'enabled = true',
      'host = "127.0.0.1"',
      `port = ${metricsPort}`,
      // On loopback the fuzzer and the real agent and client share one source address: per-source
      // limits would make the fuzzer's flood cut off the real device (and hide the parsers behind the limiter).
      '[limits]',
      'registrations_per_source_per_s = 0',
      'requests_per_source_per_min = 0',
    ].join('\n'),
  });
  // The agent at debug adds one line per registration sent ("S201 registration sent"): the count of registrations.
  await setLogLevel(setup.agentConfig, 'debug');

  const crashes: Crash[] = [];
  const stopping = new Set<ProgramName>();
  const tallies: Record<ProgramName, { byLevel: Record<string, number>; warnings: string[] }> = {
    server: { byLevel: {}, warnings: [] },
    agent: { byLevel: {}, warnings: [] },
  };
  const onLine =
    (name: ProgramName) =>
    (l: LogLine): void => {
      const level = typeof l.level === 'number' ? l.level : 0;
      const tally = tallies[name];
      tally.byLevel[String(level)] = (tally.byLevel[String(level)] ?? 0) + 1;
      if (level >= WARN_LEVEL && tally.warnings.length < KEPT_WARNINGS_MAX) tally.warnings.push(JSON.stringify(l));
    };
  const watch = (name: ProgramName, p: Program): void => {
    p.child.once('exit', (code, signal) => {
      if (!stopping.has(name)) crashes.push({ program: name, code, signal, atMs: Math.round(performance.now() - t0) });
    });
  };

  const server = startProgram('server', ['--config', setup.serverConfig], { onLine: onLine('server') });
  watch('server', server);
  let agent: Program | null = null;
  const stopAll = async (): Promise<void> => {
    stopping.add('server').add('agent');
    await Promise.all([agent?.stop(), server.stop()]);
    await new Promise<void>((r) => echo.server.close(() => r()));
  };
  try {
    // The agent only once the server listens: its first registration would otherwise go unanswered.
    await server.waitFor((l) => l.msg === 'rendezvous server listening', START_TIMEOUT_MS);
    agent = startProgram('agent', ['--config', setup.agentConfig], { onLine: onLine('agent') });
    watch('agent', agent);
    const reverse = await agent.waitFor((l) => l.msg === 'reverse port listening', START_TIMEOUT_MS);
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'), START_TIMEOUT_MS);
    const pids = Object.freeze({ server: server.child.pid!, agent: agent.child.pid! });
    const started = agent;
    return Object.freeze({
      setup,
      probePort,
      metricsPort,
      reversePort: Number(reverse.port),
      pids,
      server,
      agent: started,
      crashes: () => [...crashes],
      logs: (name: ProgramName) => ({ byLevel: { ...tallies[name].byLevel }, warnings: [...tallies[name].warnings] }),
      agentLines: (msg: string) => started.lines.filter((l) => l.msg === msg),
      stop: stopAll,
    });
  } catch (err) {
    await stopAll();
    throw err;
  }
}
