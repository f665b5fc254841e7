/**
 * npm run bench -- agent [--window-s N] [--rounds N] [--out FILE]: the idle agent's footprint
 * against a bare `node` doing nothing, measured in the same run on the same machine:
 * - RSS and private dirty memory (/proc/PID/smaps_rollup) after registering and idling;
 * - CPU time per hour of idling, extrapolated from a measured window (utime+stime);
 * - time from process start to READY (the registration ack that triggers READY=1) against
 *   bare node's time to its first line of output; median of several starts;
 * - what one systemd notification costs (the systemd-notify child), which the bare run lacks.
 * Both the build in dist/ (with node_modules) and the firmware bundle are measured.
 * Targets (issue 5): private dirty <= 1.5x bare; start->READY <= bare start + 150 ms.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { buildBundle } from '../bundle.js';
import { createLoopbackSetup } from '../lib/loopback-setup.js';
import { PROGRAMS, startProgram, type Program } from '../lib/program.js';
import { serverNodeFlags } from '../lib/server-unit.js';

const CLOCK_TICK_MS = 10; // USER_HZ = 100 on Linux
const BARE_SCRIPT = "process.stdout.write('up\\n'); setInterval(() => {}, 1 << 30);";

interface Memory {
  readonly rssKb: number;
  readonly pssKb: number;
  readonly privateDirtyKb: number;
}

export function readMemory(pid: number): Memory {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKb: field('Rss'), pssKb: field('Pss'), privateDirtyKb: field('Private_Dirty') };
}

/** utime + stime of a process, in ms. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * CLOCK_TICK_MS;
}

/** Spawn and resolve with ms from spawn until a stdout line matches. */
function timeToLine(
  argv: readonly string[],
  match: (line: string) => boolean,
  timeoutMs = 20_000,
): Promise<{ ms: number; cpuMs: number; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')}: no matching line in ${timeoutMs} ms`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (match(l)) {
        clearTimeout(timer);
        resolve({ ms: performance.now() - t0, cpuMs: cpuMs(child.pid!), child });
      }
    });
    child.once('error', reject);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await done;
  clearTimeout(t);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const min = (xs: number[]): number => Math.min(...xs);
const isRegistered = (l: string): boolean => l.includes('"msg":"S202 registered');

/** CPU and wall time of one `systemd-notify` run (what each notification costs under systemd). */
function notifyCost(runs = 20): { cpuMs: number; wallMs: number } | null {
  if (spawnSync('systemd-notify', ['--version'], { stdio: 'ignore' }).status !== 0) return null;
  const self = (): number => {
    const s = readFileSync('/proc/self/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[13]) + Number(f[14])) * CLOCK_TICK_MS; // cutime + cstime: reaped children
  };
  const c0 = self();
  const t0 = performance.now();
  // --booted does the CLI's whole start-up (libsystemd-shared) and exits; no socket needed.
  for (let i = 0; i < runs; i++) spawnSync('systemd-notify', ['--booted'], { stdio: 'ignore' });
  return { cpuMs: (self() - c0) / runs, wallMs: (performance.now() - t0) / runs };
}

export async function runAgentBench(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: { 'window-s': { type: 'string' }, 'settle-s': { type: 'string' }, rounds: { type: 'string' }, out: { type: 'string' } },
  });
  const windowS = Number(values['window-s'] ?? 120);
  // V8 keeps collecting start-up garbage for a while (memory reducer); measure the steady state after it.
  const settleS = Number(values['settle-s'] ?? 30);
  const rounds = Number(values.rounds ?? 9);
  const loadAtStart = loadavg();
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-agent-'));
  const programs: Program[] = [];
  const children: ChildProcess[] = [];
  try {
    const bundle = await buildBundle(join(dir, 'bundle'));
    const bundled = join(bundle.dir, 'peerlink-agent.cjs');
    // The shipped default interval (25 s): what an appliance idles with.
    const setup = await createLoopbackSetup({ dir: join(dir, 'cfg'), services: { echo: '127.0.0.1:7' }, registerIntervalMs: 25_000 });
    const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    const node = process.execPath;
    const variants = {
      bare: [node, '-e', BARE_SCRIPT],
      agentDist: [node, PROGRAMS.agent, '--config', setup.agentConfig],
      agentBundle: [node, bundled, '--config', setup.agentConfig],
    } as const;
    const ready = { bare: (l: string) => l === 'up', agentDist: isRegistered, agentBundle: isRegistered };

    // 1. start -> ready, interleaved so drifting load hits every variant alike
    const startMs: Record<keyof typeof variants, number[]> = { bare: [], agentDist: [], agentBundle: [] };
    const startCpuMs: Record<keyof typeof variants, number[]> = { bare: [], agentDist: [], agentBundle: [] };
    for (let i = 0; i < rounds; i++) {
      for (const k of Object.keys(variants) as Array<keyof typeof variants>) {
        const r = await timeToLine(variants[k], ready[k]);
        startMs[k].push(r.ms);
        startCpuMs[k].push(r.cpuMs);
        await stopChild(r.child);
      }
    }

    // 2. idle footprint: all three at once, over the same window
    const idle: Record<string, { child: ChildProcess }> = {};
    for (const k of Object.keys(variants) as Array<keyof typeof variants>) {
      const r = await timeToLine(variants[k], ready[k]);
      idle[k] = { child: r.child };
      children.push(r.child);
    }
    process.stderr.write(`bench agent: settling ${settleS} s ...\n`);
    await new Promise((r) => setTimeout(r, settleS * 1000));
    const cpu0 = Object.fromEntries(Object.entries(idle).map(([k, v]) => [k, cpuMs(v.child.pid!)]));
    process.stderr.write(`bench agent: idling ${windowS} s ...\n`);
    await new Promise((r) => setTimeout(r, windowS * 1000));
    const result: Record<
      string,
      {
        startMs: number;
        startMinMs: number;
        startCpuMs: number;
        rssKb: number;
        privateDirtyKb: number;
        pssKb: number;
        cpuMsPerHour: number;
      }
    > = {};
    for (const [k, v] of Object.entries(idle)) {
      const mem = readMemory(v.child.pid!);
      const used = cpuMs(v.child.pid!) - cpu0[k]!;
      const kk = k as keyof typeof variants;
      result[k] = {
        startMs: median(startMs[kk]),
        startMinMs: min(startMs[kk]),
        startCpuMs: median(startCpuMs[kk]),
        ...mem,
        cpuMsPerHour: (used * 3600) / windowS,
      };
    }
    const notify = notifyCost();

    const b = result.bare!;
    const row = (name: string, r: (typeof result)[string]): string =>
      `| ${name} | ${(r.rssKb / 1024).toFixed(1)} | ${(r.privateDirtyKb / 1024).toFixed(1)} (${(r.privateDirtyKb / b.privateDirtyKb).toFixed(2)}x) | ${(r.cpuMsPerHour / 1000).toFixed(2)} | ` +
      `${r.startMinMs.toFixed(0)} (+${(r.startMinMs - b.startMinMs).toFixed(0)}) | ${r.startMs.toFixed(0)} (+${(r.startMs - b.startMs).toFixed(0)}) | ${r.startCpuMs.toFixed(0)} (+${(r.startCpuMs - b.startCpuMs).toFixed(0)}) |`;
    const out: string[] = [];
    out.push(
      `agent footprint, idle and registered (interval 25 s), measured over ${windowS} s after ${settleS} s of settling; starts: ${rounds} of each`,
    );
    out.push('');
    out.push(
      `load average at the start: ${loadAtStart.map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} CPUs (start times are wall clock: read them with that in mind)`,
    );
    out.push('');
    out.push(
      '| process | RSS MiB | private dirty MiB (x bare) | CPU s per hour idle | start -> ready ms, best (+ over bare) | median (+) | CPU ms to ready (+) |',
    );
    out.push('|---|---|---|---|---|---|---|');
    out.push(row('bare node (baseline)', b));
    out.push(row('agent, dist/ + node_modules', result.agentDist!));
    out.push(row('agent, firmware bundle', result.agentBundle!));
    out.push('');
    for (const k of ['agentDist', 'agentBundle']) {
      const r = result[k]!;
      out.push(
        `${k}: private dirty ${(r.privateDirtyKb / b.privateDirtyKb).toFixed(2)}x bare (target <= 1.5x: ${r.privateDirtyKb <= 1.5 * b.privateDirtyKb ? 'met' : 'MISSED'}); ` +
          `start->ready (best of ${rounds}) +${(r.startMinMs - b.startMinMs).toFixed(0)} ms over bare (target <= +150 ms: ${r.startMinMs - b.startMinMs <= 150 ? 'met' : 'MISSED'}), ` +
          `median +${(r.startMs - b.startMs).toFixed(0)} ms, CPU to ready +${(r.startCpuMs - b.startCpuMs).toFixed(0)} ms`,
      );
    }
    if (notify) {
      out.push(
        `one systemd notification (systemd-notify child): ${notify.cpuMs.toFixed(1)} ms CPU, ${notify.wallMs.toFixed(1)} ms wall; ` +
          `with WatchdogSec=60s (a ping every 30 s) that adds ${((120 * notify.cpuMs) / 1000).toFixed(2)} s CPU per hour under systemd`,
      );
    }
    out.push(
      `raw start samples (ms): ${JSON.stringify(Object.fromEntries(Object.entries(startMs).map(([k, v]) => [k, v.map((x) => Math.round(x))])))}`,
    );
    process.stdout.write(`${out.join('\n')}\n`);
    await writeFile(
      values.out ?? 'bench-agent-results.json',
      `${JSON.stringify({ date: new Date().toISOString(), loadavg: loadAtStart, windowS, settleS, rounds, result, startSamplesMs: startMs, startCpuSamplesMs: startCpuMs, notify }, null, 2)}\n`,
    );
  } finally {
    await Promise.all(children.map(stopChild));
    await Promise.all(programs.map((p) => p.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}
