#!/usr/bin/env node
/**
 * The web page of `bench server --only sessions` alone, for A/B runs and profiles (issue 15):
 * `npm run build && node dist/scripts/bench/web-page.js [ROUNDS]`. The real server, agent and
 * client (`peerlink connect --listen`); ROUNDS rounds of 40 parallel GETs (16 KiB each, a TCP
 * connection each), directly and through the port, alternating, after one warm round of each.
 * With PEERLINK_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" the programs write profiles of the page
 * and little else (no other part runs). Prints JSON: median times, their ratio, CPU per request
 * of the client, the agent and this process (through the port, and directly; /proc), the machine's
 * idle share while the page went through the port (/proc/stat), and how many requests failed.
 * The agent runs with its systemd unit's node flags (agent-unit.ts), or with none when
 * PEERLINK_BENCH_AGENT_FLAGS=none (to measure what a unit flag costs, e.g. `--single-threaded-gc`),
 * and with loop-probe.ts preloaded: `agent` in the JSON gives its event-loop delay, GC pauses and
 * heap over the measured rounds.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, get, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeServer, listenOn } from '../../agent/common/listen.js';
import { createLoopbackSetup, connectArgs } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { DIST, startProgram, type Program } from '../lib/program.js';
import { serverNodeFlags } from '../lib/server-unit.js';
import { agentNodeFlags } from '../lib/agent-unit.js';
import { cpuSeconds } from './cpu-time.js';
import { waitServing } from './throughput.js';

const REQUESTS = 40;
const BODY = Buffer.alloc(16 * 1024, 0x62);

function fetchOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { connection: 'close' } }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => resolve(res.statusCode === 200 && n === BODY.length));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
  });
}

async function page(port: number): Promise<{ ms: number; failed: number }> {
  const t0 = performance.now();
  const ok = await Promise.all(Array.from({ length: REQUESTS }, () => fetchOnce(port)));
  return { ms: performance.now() - t0, failed: ok.filter((x) => !x).length };
}

/** The machine's CPU ticks so far, all cores: idle (with iowait) and total (/proc/stat). */
function machineTicks(): { idle: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: f[3]! + f[4]!, total: f.reduce((a, b) => a + b, 0) };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 60);
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-web-page-'));
  const programs: Program[] = [];
  const web: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
    res.end(BODY);
  });
  await listenOn(web, 0, '127.0.0.1');
  const webPort = (web.address() as { port: number }).port;
  try {
    const setup = await createLoopbackSetup({ dir, services: { web: `127.0.0.1:${webPort}` } });
    const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    const unitFlags = process.env.PEERLINK_BENCH_AGENT_FLAGS === 'none' ? [] : agentNodeFlags();
    const agentFlags = [...unitFlags, '--import', join(DIST, 'scripts', 'bench', 'loop-probe.js')];
    const probeFile = join(dir, 'agent-loop-probe.json');
    const env = { ...process.env, PEERLINK_LOOP_PROBE_FILE: probeFile };
    const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentFlags, env });
    programs.push(agent);
    await new Promise((r) => setTimeout(r, 2000)); // its first registration
    const port = await freePort();
    const client = startProgram('client', [...connectArgs(setup, 'web'), '--listen', `127.0.0.1:${port}`]);
    programs.push(client);
    await waitServing(client);
    await page(port);
    await page(webPort);
    const cpu0 = { client: cpuSeconds(client.child.pid!), agent: cpuSeconds(agent.child.pid!) };
    agent.child.kill('SIGUSR2'); // the probe's window starts here
    const direct: number[] = [];
    const through: number[] = [];
    // This process (the requests and the service): its CPU in the direct rounds and in the rounds through the port.
    let benchDirect = 0;
    let benchThrough = 0;
    // The machine's idle share while the page goes through the port: the cores our three processes
    // left unused (their own waiting) when it is high, other tenants' work when it is near 0.
    let idleTicks = 0;
    let allTicks = 0;
    let failed = 0;
    for (let i = 0; i < rounds; i++) {
      const b0 = cpuSeconds(process.pid);
      direct.push((await page(webPort)).ms);
      const b1 = cpuSeconds(process.pid);
      const m0 = machineTicks();
      const p = await page(port);
      const m1 = machineTicks();
      idleTicks += m1.idle - m0.idle;
      allTicks += m1.total - m0.total;
      benchThrough += cpuSeconds(process.pid) - b1;
      benchDirect += b1 - b0;
      through.push(p.ms);
      failed += p.failed;
    }
    const perRequest = (sec: number): number => Number(((sec * 1000) / (rounds * REQUESTS)).toFixed(3));
    const agentCpu = cpuSeconds(agent.child.pid!) - cpu0.agent;
    await agent.stop(); // the probe writes its file at exit
    const out = {
      rounds,
      agentFlags: unitFlags.join(' '),
      directMs: Number(median(direct).toFixed(1)),
      throughMs: Number(median(through).toFixed(1)),
      ratio: Number((median(through) / median(direct)).toFixed(2)),
      cpuMsPerRequest: {
        client: perRequest(cpuSeconds(client.child.pid!) - cpu0.client),
        agent: perRequest(agentCpu),
        bench: perRequest(benchThrough),
        benchDirect: perRequest(benchDirect),
      },
      machineIdleShareThrough: Number((idleTicks / Math.max(1, allTicks)).toFixed(2)),
      failed,
      agent: JSON.parse(readFileSync(probeFile, 'utf8')) as unknown,
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    await Promise.all(programs.map((p) => p.stop()));
    await closeServer(web);
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`web-page: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
