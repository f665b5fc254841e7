#!/usr/bin/env node
/**
 * Relayed tunnel throughput of two or more builds, A/B in one run (issue 15):
 * `npm run build && node dist/scripts/bench/tunnel-ab.js ROUNDS MIB DIR [DIR ...]`, each DIR a
 * built checkout (its dist/ holds the programs; e.g. this one and a `git worktree` of main). For
 * each DIR a real server (plain relay legs, log level warn), its agent and a relayed `--listen`
 * client (`--session-idle-ms 0`: a tunnel per connection, as the bench's tunnel rows; server and
 * agent with their units' node flags, where that build has them); one plain
 * TLS echo (tls-echo.ts) as the baseline; one TCP echo in this process. Rounds alternate baseline,
 * DIR 1, DIR 2 ... (one unmeasured warm-up each first), so that the machine's drift falls on all.
 * Per side: median and best Mbit/s (both directions), CPU-seconds per GB carried by process
 * (/proc; "bench" is this process: source and echo), and syscalls and voluntary context switches
 * (wake-ups) per GB (/proc/PID/io, /proc/PID/status).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { cpuSeconds } from './cpu-time.js';
import type * as LoopbackSetupModule from '../lib/loopback-setup.js';
import type * as ProgramModule from '../lib/program.js';
import type * as ServerUnitModule from '../lib/server-unit.js';
import type * as AgentUnitModule from '../lib/agent-unit.js';
import type * as FreePortModule from '../lib/free-port.js';
import { run } from './server.js';
import { roundTrip, startEchoServer, viaTcp, waitServing } from './throughput.js';

interface Side {
  readonly name: string;
  readonly pids: Record<string, number>;
  readonly open: () => Socket;
  readonly cpu: Record<string, number>;
  readonly syscalls: Record<string, number>;
  readonly wakeups: Record<string, number>;
  readonly ms: number[];
  gb: number;
}

/** Syscalls (reads + writes) and voluntary context switches of a process so far. */
function ioOf(pid: number): { syscalls: number; wakeups: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const n = (re: RegExp, text: string): number => Number(re.exec(text)?.[1] ?? NaN);
  return { syscalls: n(/syscr: (\d+)/, io) + n(/syscw: (\d+)/, io), wakeups: n(/^voluntary_ctxt_switches:\s+(\d+)/m, status) };
}

async function main(): Promise<void> {
  const [roundsArg, mibArg, ...dirs] = process.argv.slice(2);
  const rounds = Number(roundsArg);
  const mib = Number(mibArg);
  if (!Number.isInteger(rounds) || rounds < 1 || !(mib > 0) || !dirs.length) {
    process.stderr.write('usage: tunnel-ab.js ROUNDS MIB DIR [DIR ...]\n');
    process.exit(2);
  }
  const data = randomBytes(mib * 1024 * 1024);
  const root = await mkdtemp(join(tmpdir(), 'peerlink-tunnel-ab-'));
  const echo = await startEchoServer();
  const stops: (() => Promise<unknown>)[] = [];
  const sides: Side[] = [];
  const side = (name: string, pids: Record<string, number>, open: () => Socket): Side => ({
    name,
    pids,
    open,
    cpu: {},
    syscalls: {},
    wakeups: {},
    ms: [],
    gb: 0,
  });
  try {
    let caPem = '';
    for (const [i, d] of dirs.entries()) {
      // Each build's own setup and programs (its dist/), as that build would run them.
      const { createLoopbackSetup, connectArgs } = (await import(
        join(d, 'dist/scripts/lib/loopback-setup.js')
      )) as typeof LoopbackSetupModule;
      const { startProgram } = (await import(join(d, 'dist/scripts/lib/program.js'))) as typeof ProgramModule;
      const { serverNodeFlags } = (await import(join(d, 'dist/scripts/lib/server-unit.js'))) as typeof ServerUnitModule;
      const { freePort } = (await import(join(d, 'dist/scripts/lib/free-port.js'))) as typeof FreePortModule;
      // The agent unit's node flags; a build from before they existed ran its agent without any.
      const agentFlags = await import(join(d, 'dist/scripts/lib/agent-unit.js')).then(
        (m: typeof AgentUnitModule) => m.agentNodeFlags(),
        () => [],
      );
      const dir = join(root, `side-${i}`);
      await mkdir(dir);
      const setup = await createLoopbackSetup({
        dir,
        services: { echo: `127.0.0.1:${echo.port}` },
        directDialOnly: true,
        logLevel: 'warn',
        serverExtra: '[relay]\nbytes_per_second = 10000000000',
      });
      caPem ||= setup.caPem;
      const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
      stops.push(() => server.stop());
      await new Promise((r) => setTimeout(r, 1500)); // listening (warn level logs nothing)
      const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentFlags });
      stops.push(() => agent.stop());
      await new Promise((r) => setTimeout(r, 1500)); // first registration
      const port = await freePort();
      const client = startProgram('client', [
        ...connectArgs(setup, 'echo'),
        '--session-idle-ms',
        '0',
        '--listen',
        `127.0.0.1:${port}`,
        '--advertise-port',
        String(await freePort()),
      ]);
      stops.push(() => client.stop());
      await waitServing(client);
      sides.push(side(d, { client: client.child.pid!, server: server.child.pid!, agent: agent.child.pid! }, viaTcp(port, data)));
    }
    const tlsEcho = run(null, [
      join(import.meta.dirname, 'tls-echo.js'),
      join(root, 'side-0', 'server.pem'),
      join(root, 'side-0', 'server.key'),
    ]);
    stops.push(() => tlsEcho.stop());
    const { port: tlsEchoPort } = (await tlsEcho.first) as { port: number };
    const plain = side('plain TLS', { 'tls-echo': tlsEcho.pid }, () => {
      const s = tlsConnect({ host: '127.0.0.1', port: tlsEchoPort, ca: caPem, servername: 'localhost' }, () => s.end(data));
      return s;
    });
    const all = [plain, ...sides];
    for (const s of all) await roundTrip(s.open, data); // warm-up, not measured
    for (let r = 0; r < rounds; r++) {
      for (const s of all) {
        const cpu0 = Object.fromEntries(Object.entries(s.pids).map(([k, p]) => [k, cpuSeconds(p)]));
        const io0 = Object.fromEntries(Object.entries(s.pids).map(([k, p]) => [k, ioOf(p)]));
        const self = process.cpuUsage();
        s.ms.push(await roundTrip(s.open, data));
        await new Promise((res) => setTimeout(res, 30)); // the closes' last work lands in this round
        const used = process.cpuUsage(self);
        s.cpu.bench = (s.cpu.bench ?? 0) + (used.user + used.system) / 1e6;
        for (const [k, p] of Object.entries(s.pids)) {
          const io = ioOf(p);
          s.cpu[k] = (s.cpu[k] ?? 0) + cpuSeconds(p) - cpu0[k]!;
          s.syscalls[k] = (s.syscalls[k] ?? 0) + io.syscalls - io0[k]!.syscalls;
          s.wakeups[k] = (s.wakeups[k] ?? 0) + io.wakeups - io0[k]!.wakeups;
        }
        s.gb += (2 * data.length) / 1e9;
      }
    }
    const mbps = (ms: number): number => (2 * data.length * 8) / (ms / 1000) / 1e6;
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const per = (m: Record<string, number>, gb: number, digits: number): Record<string, number> =>
      Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number((v / gb).toFixed(digits))]));
    const out = all.map((s) => ({
      side: s.name,
      medianMbps: Math.round(mbps(median(s.ms))),
      bestMbps: Math.round(mbps(Math.min(...s.ms))),
      medianVsPlainTls: Number((mbps(median(s.ms)) / mbps(median(plain.ms))).toFixed(2)),
      cpuSecondsPerGb: per(s.cpu, s.gb, 2),
      cpuSecondsPerGbTotal: Number((Object.values(s.cpu).reduce((a, b) => a + b, 0) / s.gb).toFixed(2)),
      syscallsPerGb: per(s.syscalls, s.gb, 0),
      wakeupsPerGb: per(s.wakeups, s.gb, 0),
    }));
    process.stdout.write(`${JSON.stringify({ rounds, mib, sides: out }, null, 1)}\n`);
  } finally {
    await Promise.all(stops.map((s) => s()));
    await echo.close();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
