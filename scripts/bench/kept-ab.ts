#!/usr/bin/env node
/**
 * The device's kept attach connection (issue 15), A/B in one run:
 * `npm run build && node dist/scripts/bench/kept-ab.js [ROUNDS]`. Two real servers, each with its
 * own agent (at log level warn): A with `server.keep_idle_ms = 0` (every request notified over UDP,
 * a new device TLS connection: as before), B with the default (the device keeps its connection).
 * Connection requests one at a time through the client library (a whole rendezvous each), in
 * blocks of 10 alternating A, B, A, B ... so that the machine's drift falls on both alike; plus a
 * direct TLS connect to the server (the baseline of the ratios). Per side: time to connect
 * p50, server and agent CPU per request (/proc), and the server's device attach connections and
 * UDP notifications (metrics). Prints JSON.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type Client } from '../../agent/client/client.js';
import { createLoopbackSetup, type LoopbackSetup } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { startProgram, type Program } from '../lib/program.js';
import { cpuSeconds } from './cpu-time.js';
import { startEchoServer } from './throughput.js';
import { serverNodeFlags } from '../lib/server-unit.js';
import { agentNodeFlags } from '../lib/agent-unit.js';

const BLOCK = 10;

interface Side {
  readonly name: string;
  readonly setup: LoopbackSetup;
  readonly server: Program;
  readonly agent: Program;
  readonly metricsPort: number;
  readonly client: Client;
  readonly times: number[];
  cpu: { server: number; agent: number };
}

async function metric(port: number, name: string): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const line of body.split('\n')) if (line.startsWith(name)) n += Number(line.split(' ').at(-1));
  return n;
}

async function side(dir: string, name: string, echoPort: number, keep: boolean): Promise<Omit<Side, 'client' | 'times' | 'cpu'>> {
  await mkdir(dir, { recursive: true });
  const metricsPort = await freePort();
  const setup = await createLoopbackSetup({
    dir,
    services: { echo: `127.0.0.1:${echoPort}` },
    directDialOnly: true,
    logLevel: 'warn',
    serverExtra: [
      '[relay]\nmax_sessions_per_device = 100000\nmax_sessions_per_source = 100000',
      '[limits]\nrequests_per_source_per_min = 0\nrequests_per_device_per_min = 0',
      `[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metricsPort}`,
    ].join('\n'),
  });
  if (!keep)
    await writeFile(setup.agentConfig, (await readFile(setup.agentConfig, 'utf8')).replace('[server]\n', '[server]\nkeep_idle_ms = 0\n'));
  const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = netConnect(setup.tlsPort, '127.0.0.1', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentNodeFlags() });
  return { name, setup, server, agent, metricsPort };
}

function tlsOnce(s: LoopbackSetup): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = tlsConnect({ host: '127.0.0.1', port: s.tlsPort, servername: 'localhost', ca: s.caPem }, () => {
      resolve(performance.now() - t0);
      c.destroy();
    });
    c.once('error', reject);
  });
}

const p50 = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 100);
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-kept-ab-'));
  const echo = await startEchoServer();
  const sides: Side[] = [];
  const programs: Program[] = [];
  try {
    for (const [name, keep] of [
      ['A: not kept (keep_idle_ms = 0)', false],
      ['B: kept (default)', true],
    ] as const) {
      const s = await side(join(dir, keep ? 'b' : 'a'), name, echo.port, keep);
      programs.push(s.server, s.agent);
      const client = createClient({
        server: { host: '127.0.0.1', port: s.setup.tlsPort },
        serverName: 'localhost',
        caPem: s.setup.caPem,
        equipmentId: s.setup.equipmentId,
        password: s.setup.password,
        service: 'echo',
        accept: { host: '127.0.0.1', port: 0 },
        // A whole rendezvous per open(): what this measures.
        sessionIdleMs: 0,
      });
      await client.start();
      sides.push({ ...s, client, times: [], cpu: { server: 0, agent: 0 } });
    }
    await new Promise((r) => setTimeout(r, 1500)); // first registrations
    const once = async (s: Side): Promise<number> => {
      const t0 = performance.now();
      const tunnel = await s.client.open(AbortSignal.timeout(30_000));
      const ms = performance.now() - t0;
      tunnel.stream.destroy();
      return ms;
    };
    for (const s of sides) for (let i = 0; i < 3; i++) await once(s); // warm-up
    const counts = (s: Side): Promise<number[]> =>
      Promise.all(['peerlink_tls_handshakes_total', 'peerlink_notifications_sent_total'].map((m) => metric(s.metricsPort, m)));
    const counts0 = await Promise.all(sides.map(counts));
    const tls: number[] = [];
    for (let done = 0; done < rounds; done += BLOCK) {
      for (const s of sides) {
        const c0 = { server: cpuSeconds(s.server.child.pid!), agent: cpuSeconds(s.agent.child.pid!) };
        for (let i = 0; i < BLOCK; i++) s.times.push(await once(s));
        s.cpu.server += cpuSeconds(s.server.child.pid!) - c0.server;
        s.cpu.agent += cpuSeconds(s.agent.child.pid!) - c0.agent;
      }
      for (let i = 0; i < BLOCK; i++) tls.push(await tlsOnce(sides[0]!.setup));
    }
    const tlsP50 = p50(tls);
    const out: Record<string, unknown> = { rounds, directTlsConnectP50Ms: +tlsP50.toFixed(2) };
    for (const [i, s] of sides.entries()) {
      const n = s.times.length;
      out[s.name] = {
        connectP50Ms: +p50(s.times).toFixed(2),
        connectP50VsTls: +(p50(s.times) / tlsP50).toFixed(2),
        serverCpuMsPerRequest: +((s.cpu.server * 1000) / n).toFixed(2),
        agentCpuMsPerRequest: +((s.cpu.agent * 1000) / n).toFixed(2),
        ...(await counts(s).then(([tlsHandshakes, notifications]) => ({
          serverTlsHandshakesPerRequest: +((tlsHandshakes! - counts0[i]![0]!) / n).toFixed(2),
          udpNotificationsPerRequest: +((notifications! - counts0[i]![1]!) / n).toFixed(2),
        }))),
      };
    }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    for (const s of sides) await s.client.stop();
    await Promise.all(programs.map((p) => p.stop()));
    await echo.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`kept-ab: ${(err as Error).stack}\n`);
  process.exit(1);
});
