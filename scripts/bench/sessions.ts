/**
 * Sessions with streams (`npm run bench -- server --only sessions`), each figure against a
 * baseline measured in the same run:
 *   - a second stream on a live session: time until the device answered the CONNECT (it connected
 *     its service), p50, vs a plain TCP connect to the same service on loopback; and the
 *     connection requests the server saw meanwhile (none expected);
 *   - "a web page": 40 parallel HTTP requests, each on its own TCP connection, through one
 *     `peerlink connect --listen` port to the appliance's HTTP service, total time vs the same
 *     40 made directly to the service (target <= 1.5x), how many succeeded, and the CPU they cost;
 *   - throughput of a stream of a session vs a tunnel per connection (and plain TCP), one echo round trip.
 * The real server and agent programs; the stream figure uses the client library in this process,
 * the web page the real client program.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, get as httpGet, type Server as HttpServer } from 'node:http';
import { connect as netConnect } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '../../agent/client/client.js';
import { closeServer, listenOn } from '../../agent/common/listen.js';
import { createLoopbackSetup, connectArgs } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { startProgram, type Program } from '../lib/program.js';
import { serverNodeFlags } from '../lib/server-unit.js';
import { agentNodeFlags } from '../lib/agent-unit.js';
import { bestMbps, startEchoServer, viaTcp, waitServing } from './throughput.js';
import { cpuSeconds } from './cpu-time.js';
import { randomBytes } from 'node:crypto';

export interface SessionFigures {
  readonly tcpConnectP50Ms: number;
  readonly streamOpenP50Ms: number;
  readonly streamOpenP99Ms: number;
  readonly streams: number;
  /** Connection requests the server saw while those streams were opened. */
  readonly serverRequestsDuringStreams: number;
  readonly pageRequests: number;
  readonly pageResourceBytes: number;
  readonly pageDirectMs: number;
  readonly pageThroughListenMs: number;
  readonly pageSucceeded: number;
  /** Log lines the agent (at its default level) wrote during the page rounds through the port. */
  readonly pageAgentLogLines: number;
  /** The machine's 1-minute load average around the page rounds (the ratio depends on it). */
  readonly pageLoadAvg: number;
  /** CPU per request of the web page through the port: the client program, the agent, this process (the service and the requests). */
  readonly pageCpuMsPerRequest: { readonly client: number; readonly agent: number; readonly bench: number };
  /** CPU per request of the direct page (this process: the requests and the service). */
  readonly pageDirectCpuMsPerRequest: number;
  /** Round trip of a payload through an echo service: plain TCP, a tunnel per connection, a stream of a session. */
  readonly throughputPayloadBytes: number;
  readonly plainTcpMbps: number;
  readonly tunnelMbps: number;
  readonly streamMbps: number;
}

const PAGE_REQUESTS = 40;
const PAGE_RESOURCE_BYTES = 16 * 1024;

const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
};

function tcpConnectMs(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = netConnect(port, '127.0.0.1', () => {
      const ms = performance.now() - t0;
      s.destroy();
      resolve(ms);
    });
    s.once('error', reject);
  });
}

/** One GET on a new TCP connection (no keep-alive agent), as a browser's parallel connections are. */
function fetchOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpGet({ host: '127.0.0.1', port, path: '/', agent: false, headers: { connection: 'close' } }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => resolve(res.statusCode === 200 && n === PAGE_RESOURCE_BYTES));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
  });
}

/** Wall time of PAGE_REQUESTS parallel GETs, and how many came back whole. */
async function page(port: number): Promise<{ ms: number; ok: number }> {
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: PAGE_REQUESTS }, () => fetchOnce(port)));
  return { ms: performance.now() - t0, ok: results.filter(Boolean).length };
}

async function rendezvousCount(metricsPort: number): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  let n = 0;
  for (const line of body.split('\n')) {
    const m = /^peerlink_connection_requests_total\{[^}]*\} (\S+)$/.exec(line);
    if (m) n += Number(m[1]);
  }
  return n;
}

export async function sessionBench(o: { quick: boolean }): Promise<SessionFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-sessions-'));
  const programs: Program[] = [];
  const echo = await startEchoServer();
  const body = Buffer.alloc(PAGE_RESOURCE_BYTES, 0x62);
  const web: HttpServer = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  await listenOn(web, 0, '127.0.0.1');
  const webPort = (web.address() as { port: number }).port;
  const client = { stop: async (): Promise<void> => undefined };
  try {
    const metricsPort = await freePort();
    const setup = await createLoopbackSetup({
      dir,
      services: { echo: `127.0.0.1:${echo.port}`, web: `127.0.0.1:${webPort}` },
      serverExtra: `[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metricsPort}`,
    });
    // The agent at its default level (info), as a user runs it: a stream logs nothing at info, and
    // the web page's row says how many lines its rounds made, so a line per stream would show.
    const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentNodeFlags() });
    programs.push(agent);
    for (let i = 0; i < 100 && (await rendezvousCount(metricsPort).catch(() => -1)) < 0; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1500)); // first registration (the agent logs at warn)

    // A second stream on a live session vs a plain TCP connect to the service.
    const n = o.quick ? 50 : 200;
    const c = createClient({
      server: { host: '127.0.0.1', port: setup.tlsPort },
      serverName: 'localhost',
      caPem: setup.caPem,
      equipmentId: setup.equipmentId,
      password: setup.password,
      service: 'echo',
      accept: { host: '127.0.0.1', port: 0 },
      sessionIdleMs: 60_000,
    });
    client.stop = () => c.stop();
    const first = await c.open();
    const before = await rendezvousCount(metricsPort);
    const streamMs: number[] = [];
    const tcpMs: number[] = [];
    for (let i = 0; i < n; i++) {
      // Alternate: noise from other tenants hits both alike.
      tcpMs.push(await tcpConnectMs(echo.port));
      const t = await c.open();
      streamMs.push(t.connectMs);
      t.stream.destroy();
    }
    const during = (await rendezvousCount(metricsPort)) - before;
    first.stream.destroy();
    await c.stop();

    // A web page: 40 parallel requests through one --listen port vs directly.
    const listenPort = await freePort();
    const cli = startProgram('client', [...connectArgs(setup, 'web'), '--listen', `127.0.0.1:${listenPort}`]);
    programs.push(cli);
    await waitServing(cli);
    await page(listenPort); // the first stream of the session was opened at start; warm both paths alike
    await page(webPort);
    // Timed from here: the session is up (the client made it before it printed "serving") and
    // warm; the start of the programs and the first rendezvous are not in the figure.
    const rounds = o.quick ? 3 : 7;
    const agentLines0 = agent.lines.length;
    const load0 = loadavg()[0]!;
    const direct: number[] = [];
    const through: number[] = [];
    let succeeded = PAGE_REQUESTS;
    const cpu = { client: 0, agent: 0, bench: 0 };
    let directCpu = 0;
    for (let i = 0; i < rounds; i++) {
      const direct0 = cpuSeconds(process.pid);
      direct.push((await page(webPort)).ms);
      directCpu += cpuSeconds(process.pid) - direct0;
      const cpu0 = { client: cpuSeconds(cli.child.pid!), agent: cpuSeconds(agent.child.pid!), bench: cpuSeconds(process.pid) };
      const p = await page(listenPort);
      cpu.client += cpuSeconds(cli.child.pid!) - cpu0.client;
      cpu.agent += cpuSeconds(agent.child.pid!) - cpu0.agent;
      cpu.bench += cpuSeconds(process.pid) - cpu0.bench;
      through.push(p.ms);
      succeeded = Math.min(succeeded, p.ok);
    }
    const perRequest = (sec: number): number => (sec * 1000) / (rounds * PAGE_REQUESTS);
    const pageAgentLogLines = agent.lines.length - agentLines0;
    const pageLoadAvg = (load0 + loadavg()[0]!) / 2;

    // Throughput: a stream of a session vs a tunnel per connection, through the same echo service.
    const [streamPort, tunnelPort] = [await freePort(), await freePort()];
    const streamCli = startProgram('client', [...connectArgs(setup, 'echo'), '--listen', `127.0.0.1:${streamPort}`]);
    const tunnelCli = startProgram('client', [
      ...connectArgs(setup, 'echo'),
      '--listen',
      `127.0.0.1:${tunnelPort}`,
      '--session-idle-ms',
      '0',
    ]);
    programs.push(streamCli, tunnelCli);
    await Promise.all([waitServing(streamCli), waitServing(tunnelCli)]);
    const data = randomBytes(o.quick ? 4 * 1024 * 1024 : 16 * 1024 * 1024);
    const tput = { plain: 0, tunnel: 0, stream: 0 };
    for (let i = 0; i < (o.quick ? 1 : 3); i++) {
      tput.plain = Math.max(tput.plain, await bestMbps(viaTcp(echo.port, data), data, 1));
      tput.tunnel = Math.max(tput.tunnel, await bestMbps(viaTcp(tunnelPort, data), data, 1));
      tput.stream = Math.max(tput.stream, await bestMbps(viaTcp(streamPort, data), data, 1));
    }
    return {
      tcpConnectP50Ms: percentile(tcpMs, 0.5),
      streamOpenP50Ms: percentile(streamMs, 0.5),
      streamOpenP99Ms: percentile(streamMs, 0.99),
      streams: n,
      serverRequestsDuringStreams: during,
      pageRequests: PAGE_REQUESTS,
      pageResourceBytes: PAGE_RESOURCE_BYTES,
      pageDirectMs: percentile(direct, 0.5),
      pageThroughListenMs: percentile(through, 0.5),
      pageSucceeded: succeeded,
      pageAgentLogLines,
      pageLoadAvg,
      pageCpuMsPerRequest: { client: perRequest(cpu.client), agent: perRequest(cpu.agent), bench: perRequest(cpu.bench) },
      pageDirectCpuMsPerRequest: perRequest(directCpu),
      throughputPayloadBytes: data.length,
      plainTcpMbps: tput.plain,
      tunnelMbps: tput.tunnel,
      streamMbps: tput.stream,
    };
  } finally {
    await client.stop();
    await Promise.all(programs.map((p) => p.stop()));
    await echo.close();
    await closeServer(web);
    await rm(dir, { recursive: true, force: true });
  }
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-');

const PAGE_CORES = availableParallelism();
const pageThroughCpu = (f: SessionFigures): number =>
  f.pageCpuMsPerRequest.client + f.pageCpuMsPerRequest.agent + f.pageCpuMsPerRequest.bench;

/** The least wall time of the page through the port its three processes' CPU allows (all cores busy). */
const pageThroughFloorMs = (f: SessionFigures): number => (pageThroughCpu(f) * f.pageRequests) / Math.min(PAGE_CORES, 3);

/** The table rows: figure, measured, target, ratio to baseline. */
export function sessionRows(f: SessionFigures | null): [string, string, string, string][] {
  if (!f) return [];
  return [
    ['plain TCP connect to the service on loopback, p50 (ms)', f2(f.tcpConnectP50Ms), 'baseline', '1.00'],
    [
      `a second stream on a live session, until the device answered, p50 / p99 (ms; server requests meanwhile: ${f.serverRequestsDuringStreams} for ${f.streams} streams)`,
      `${f2(f.streamOpenP50Ms)} / ${f2(f.streamOpenP99Ms)}`,
      'report',
      f1(f.streamOpenP50Ms / f.tcpConnectP50Ms),
    ],
    [
      `a web page: ${f.pageRequests} parallel HTTP requests (${f.pageResourceBytes / 1024} KiB each) directly to the service, median total (ms)`,
      f1(f.pageDirectMs),
      'baseline',
      '1.00',
    ],
    [
      `a web page through one --listen port, session up, median total (ms); succeeded (worst round) [load ${f1(f.pageLoadAvg)}; agent log lines: ${f.pageAgentLogLines}]`,
      `${f1(f.pageThroughListenMs)}; ${f.pageSucceeded}/${f.pageRequests}`,
      '<= 1.5, all',
      f2(f.pageThroughListenMs / f.pageDirectMs),
    ],
    [
      'a web page through --listen: CPU per request of the client / the agent / the requests and the service (ms)',
      `${f2(f.pageCpuMsPerRequest.client)} / ${f2(f.pageCpuMsPerRequest.agent)} / ${f2(f.pageCpuMsPerRequest.bench)}`,
      'report',
      '-',
    ],
    [
      // The direct page runs in one process; through the port the work of three shares the cores:
      // on N cores the page cannot take less than (their CPU / min(N, 3)) / the direct CPU of it.
      `a web page: CPU per request, all processes: direct (one process) / through the port (three); the least ratio that leaves on ${PAGE_CORES} cores`,
      `${f2(f.pageDirectCpuMsPerRequest)} / ${f2(pageThroughCpu(f))}`,
      'report',
      `${f2(pageThroughCpu(f) / f.pageDirectCpuMsPerRequest)} (${f2(pageThroughCpu(f) / Math.min(PAGE_CORES, 3) / f.pageDirectCpuMsPerRequest)} on ${PAGE_CORES} cores)`,
    ],
    [
      // The row above divides by the direct page's CPU, but that page takes less wall time than CPU
      // (V8's helper threads run beside its main thread: 1.0-1.25 cores): against its wall time
      // the least ratio is higher. The share of the cores the page through the port kept busy says
      // what waiting is left to cut: 1.00 none (CPU-bound), 0.50 half the time idle.
      `a web page through the port: the least time its CPU allows on ${PAGE_CORES} cores (ms), vs the direct page's time; the cores' busy share`,
      f1(pageThroughFloorMs(f)),
      'report',
      `${f2(pageThroughFloorMs(f) / f.pageDirectMs)}; busy ${f2(pageThroughFloorMs(f) / f.pageThroughListenMs)}`,
    ],
    [
      `echo throughput (${f.throughputPayloadBytes / 1048576} MiB round trip): plain TCP (Mbit/s, both directions)`,
      f1(f.plainTcpMbps),
      'baseline',
      '1.00',
    ],
    ['echo throughput: a tunnel per connection (--session-idle-ms 0)', f1(f.tunnelMbps), 'report', f2(f.tunnelMbps / f.plainTcpMbps)],
    [
      'echo throughput: a stream of a session (--listen default)',
      f1(f.streamMbps),
      'report',
      `${f2(f.streamMbps / f.plainTcpMbps)} (${f2(f.streamMbps / f.tunnelMbps)} of the tunnel)`,
    ],
  ];
}
