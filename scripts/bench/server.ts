/**
 * npm run bench -- server [--out FILE] [--quick]: the rendezvous server against its limits, each
 * figure a ratio to a baseline measured in the same run (the machines are shared and noisy):
 *   - registrations per second on one core (authenticated, in-memory registry; also with Redis)
 *     vs a bare Node UDP echo server on the same core;
 *   - memory per registered device at 100k and 1M devices (in-memory registry);
 *   - connection requests per second end to end, p50/p99 time to connect vs one direct TLS connect;
 *   - tunnel throughput vs plain TLS, direct and through the relay, and the CPU-seconds per GB each
 *     process spent (the Mbit/s go with the machine's load; the work per byte much less);
 *   - a TLS handshake's cost by server key (RSA / ECDSA), full and resumed (handshake-cost.ts);
 *   - the time line of one connection, direct and relayed, and relayed vs direct time to connect (timeline.ts);
 *   - sessions with streams: a second stream vs a TCP connect, and a web page through --listen (sessions.ts).
 * --only udp|memory|connect|tunnel|handshake|timeline|sessions|connections (the last: the five connection parts).
 * Targets and load generators run in their own processes; pinned to cores with taskset when present.
 * Prints a table; writes the figures to bench-server-results.json (or --out FILE).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import { createLoopbackSetup, connectArgs } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { startProgram, type Program } from '../lib/program.js';
import { serverNodeFlags } from '../lib/server-unit.js';
import { agentNodeFlags } from '../lib/agent-unit.js';
import { startRedis } from '../lib/redis-process.js';
import { ensureGroups } from '../lib/prerequisites.js';
import { cpuSeconds } from './cpu-time.js';
import { boundRatio } from './cpu-bound.js';
import { bestMbps, roundTrip, startEchoServer, viaTcp, waitServing } from './throughput.js';
import { handshakeCosts, type HandshakeFigure } from './handshake-cost.js';
import { connectionTimelines, formatTimeline, medianTimeline, type Timeline } from './timeline.js';
import { fleetBench, fleetReport, type FleetFigures } from './fleet.js';
import { sessionBench, sessionRows, type SessionFigures } from './sessions.js';

const here = dirname(fileURLToPath(import.meta.url));
const script = (name: string): string => join(here, `${name}.js`);
/** The cores the tunnel rows' processes share (the estimate rows assume them all). */
const TUNNEL_CORES = availableParallelism();
const HAVE_TASKSET = spawnSync('taskset', ['--version']).status === 0 && cpus().length >= 2;

/** argv for a node script, pinned to one core when possible (the target on 0, its load on 1). */
function nodeArgv(core: number | null, args: readonly string[]): [string, string[]] {
  // PEERLINK_NODE_ARGS (e.g. --cpu-prof) applies to the load generators too, as to the programs.
  const nodeArgs = process.env.PEERLINK_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  if (core !== null && HAVE_TASKSET) return ['taskset', ['-c', String(core), process.execPath, ...nodeArgs, ...args]];
  return [process.execPath, [...nodeArgs, ...args]];
}

interface Running {
  readonly pid: number;
  readonly first: Promise<Record<string, unknown>>;
  stop(): Promise<Record<string, unknown> | null>;
}

/** Spawn a node script that prints JSON lines; `first` is its first line. */
export function run(core: number | null, args: readonly string[]): Running {
  const [cmd, argv] = nodeArgv(core, args);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let err = '';
  let buf = '';
  const waiters: ((l: Record<string, unknown>) => void)[] = [];
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      lines.push(l);
      waiters.shift()?.(l);
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const first = new Promise<Record<string, unknown>>((resolve, reject) => {
    waiters.push(resolve);
    void exited.then((c) => (lines.length ? undefined : reject(new Error(`${args.join(' ')} exited ${c}: ${err}`))));
  });
  return {
    pid: child.pid!,
    first,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      return lines.length > 1 ? lines[lines.length - 1]! : null;
    },
  };
}

interface UdpFigure {
  readonly perSecond: number;
  readonly perCpuSecond: number;
  readonly cpuShare: number;
  /** The target's user and kernel CPU per answer (µs), in the run with the best per-CPU rate. */
  readonly userUs: number;
  readonly systemUs: number;
  /** Answers per CPU-second of the redis-server behind the target. */
  readonly perRedisCpuSecond?: number;
  /** Registrations the target could not write to Redis (acked from its own list instead). */
  readonly registryUnavailable: number;
}

async function udpRun(
  mode: 'echo' | 'register' | 'register-redis',
  seconds: number,
  master: Buffer,
  redisUrl?: string,
  redisPid?: number,
): Promise<UdpFigure> {
  // With Redis: every registration written (refresh 0), the cost write on change pays when it writes (fleet.ts).
  // The server's registration endpoint in its own process: with the server unit's node flags.
  const target = run(0, [
    ...serverNodeFlags(),
    script('udp-target'),
    mode,
    master.toString('base64'),
    ...(redisUrl ? [redisUrl, '0'] : []),
  ]);
  let registryUnavailable = 0;
  let figure: Omit<UdpFigure, 'registryUnavailable'>;
  try {
    const { port, pid } = (await target.first) as { port: number; pid: number };
    const load = run(1, [
      script('udp-load'),
      String(port),
      mode === 'echo' ? 'echo' : 'register',
      String(seconds),
      '256',
      master.toString('base64'),
      '20000',
      String(pid),
      ...(redisPid ? [String(redisPid)] : []),
    ]);
    const r = (await load.first) as {
      answersPerSecond: number;
      answersPerCpuSecond: number;
      targetCpuShare: number;
      answersPerExtraCpuSecond?: number;
      exhausted: boolean;
      perAnswerUs: { targetUser: number; targetSystem: number };
    };
    if (r.exhausted) process.stderr.write(`bench: ${mode}: the generator ran out of packets; the figure is a lower bound\n`);
    figure = {
      perSecond: r.answersPerSecond,
      perCpuSecond: r.answersPerCpuSecond,
      cpuShare: r.targetCpuShare,
      userUs: r.perAnswerUs.targetUser,
      systemUs: r.perAnswerUs.targetSystem,
      ...(r.answersPerExtraCpuSecond !== undefined ? { perRedisCpuSecond: r.answersPerExtraCpuSecond } : {}),
    };
  } finally {
    const end = (await target.stop()) as { stats?: Record<string, number> } | null;
    registryUnavailable = end?.stats?.registryUnavailable ?? 0;
  }
  if (registryUnavailable > 0) {
    process.stderr.write(
      `bench: ${mode}: ${registryUnavailable} registrations could not reach Redis (acked from the node's own list); the Redis figures are not valid\n`,
    );
  }
  return { ...figure, registryUnavailable };
}

async function registrations(o: { seconds: number; rounds: number }): Promise<Record<string, number>> {
  const master = randomBytes(32);
  const best = (a: UdpFigure | null, b: UdpFigure): UdpFigure =>
    a === null
      ? b
      : {
          perSecond: Math.max(a.perSecond, b.perSecond),
          perCpuSecond: Math.max(a.perCpuSecond, b.perCpuSecond),
          cpuShare: Math.max(a.cpuShare, b.cpuShare),
          ...(a.perCpuSecond >= b.perCpuSecond ? { userUs: a.userUs, systemUs: a.systemUs } : { userUs: b.userUs, systemUs: b.systemUs }),
          registryUnavailable: a.registryUnavailable + b.registryUnavailable,
        };
  let echo: UdpFigure | null = null;
  let mem: UdpFigure | null = null;
  // Alternate, best of each: noise from other tenants hits both alike.
  for (let i = 0; i < o.rounds; i++) {
    echo = best(echo, await udpRun('echo', o.seconds, master));
    mem = best(mem, await udpRun('register', o.seconds, master));
  }
  // redis-server (Debian) is installed here when missing and this runs as root.
  const installed = ensureGroups(['redis'], (l) => process.stderr.write(`bench: ${l}\n`));
  if (!installed.ok) process.stderr.write(`bench: apt-get failed:\n${installed.output.trim().split('\n').slice(-10).join('\n')}\n`);
  const redis = await startRedis();
  try {
    const { Redis } = await import('ioredis');
    const c = new Redis(redis.url);
    const used = async (): Promise<number> => Number(/used_memory:(\d+)/.exec(await c.info('memory'))![1]);
    const before = await used();
    const measured = await udpRun('register-redis', o.seconds, master, redis.url, redis.pid);
    const invalid = measured.registryUnavailable > 0;
    const withRedis = invalid ? { perSecond: NaN, perCpuSecond: NaN, perRedisCpuSecond: NaN } : measured;
    const keys = await c.dbsize();
    const perDevice = invalid ? NaN : (await used()) - before;
    c.disconnect();
    return {
      echoPerSecond: echo!.perSecond,
      echoPerCpuSecond: echo!.perCpuSecond,
      echoCpuShare: echo!.cpuShare,
      echoUserUs: echo!.userUs,
      echoSystemUs: echo!.systemUs,
      memoryBackendUserUs: mem!.userUs,
      memoryBackendSystemUs: mem!.systemUs,
      memoryBackendPerSecond: mem!.perSecond,
      memoryBackendPerCpuSecond: mem!.perCpuSecond,
      memoryBackendCpuShare: mem!.cpuShare,
      redisBackendPerSecond: withRedis.perSecond,
      redisBackendPerCpuSecond: withRedis.perCpuSecond,
      registrationsPerRedisCpuSecond: withRedis.perRedisCpuSecond ?? NaN,
      redisWriteFailures: measured.registryUnavailable,
      redisBytesPerDevice: perDevice / Math.max(1, keys),
      redisDevices: keys,
    };
  } finally {
    await redis.stop();
  }
}

async function memory(sizes: readonly number[]): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const n of sizes) {
    for (const kind of ['compact', 'map'] as const) {
      if (kind === 'map' && n > 100_000) continue;
      const r = run(null, ['--expose-gc', script('registry-memory'), String(n), kind]);
      out[`${kind}-${n}`] = (await r.first) as Record<string, number>;
      await r.stop();
    }
  }
  return out;
}

/** The server's TLS handshakes so far that reached the broker, from its metrics. */
async function tlsHandshakes(port: number): Promise<{ full: number; resumed: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const count = (kind: string): number =>
    Number(new RegExp(`^peerlink_tls_handshakes_total\\{kind="${kind}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { full: count('full'), resumed: count('resumed') };
}

/** CPU-seconds per GB carried (both directions counted, as the Mbit/s are), by process. */
export type CpuPerGb = Record<string, number>;

/**
 * Throughput through `open` (best of `rounds`), and the CPU each process named in `pids` (and this
 * one, "bench": the sender, the receiver and, for tunnels, the echo service) spent over all rounds.
 */
async function measuredMbps(
  open: () => Socket,
  data: Buffer,
  rounds: number,
  pids: Readonly<Record<string, number>>,
  into: { mbps: number; cpu: CpuPerGb; gb: number },
): Promise<void> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const self = process.cpuUsage();
  into.mbps = Math.max(into.mbps, await bestMbps(open, data, rounds));
  const used = process.cpuUsage(self);
  const gb = (rounds * 2 * data.length) / 1e9;
  const cpu: CpuPerGb = { bench: (used.user + used.system) / 1e6 };
  for (const [k, pid] of Object.entries(pids)) cpu[k] = cpuSeconds(pid) - before[k]!;
  // Accumulated as CPU-seconds and GB; divided when reported.
  for (const [k, v] of Object.entries(cpu)) into.cpu[k] = (into.cpu[k] ?? 0) + v;
  into.gb += gb;
}

const perGb = (m: { cpu: CpuPerGb; gb: number }): CpuPerGb => Object.fromEntries(Object.entries(m.cpu).map(([k, v]) => [k, v / m.gb]));

const NONE = { n: 0, p50Ms: NaN, p99Ms: NaN };
/** The connect figures when the connection-request load did not run. */
const NO_CONNECT: Record<string, unknown> = {
  tlsConnect: NONE,
  sequential: NONE,
  concurrent: { ...NONE, requestsPerSecond: NaN, concurrency: 0, failures: 0 },
};

async function endToEnd(o: {
  quick: boolean;
  concurrency: number;
  /** The connection-request load (connect-load.ts); off, only the tunnels are measured. */
  connect: boolean;
  tunnel: boolean;
}): Promise<{ connect: Record<string, unknown>; tunnel?: Record<string, number>; tunnelCpu?: Record<string, CpuPerGb> }> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-server-'));
  const programs: Program[] = [];
  const stoppers: (() => Promise<unknown>)[] = [];
  const echo = await startEchoServer();
  try {
    const echoPort = echo.port;
    // The server's metrics count its TLS handshakes, full or resumed: do clients and devices resume?
    const metricsPort = await freePort();
    const setup = await createLoopbackSetup({
      dir,
      services: { echo: `127.0.0.1:${echoPort}` },
      // The patent's dial and the relay only, so the closed-port client below is really relayed
      // (with the reverse port or a punch it would get a direct path on loopback).
      directDialOnly: true,
      // A log line per request costs time; this measures the server and the agent, not pino.
      logLevel: 'warn',
      serverExtra: [
        '[requests]\nmax_pending_per_device = 64',
        // An offer a client leaves unreleased (an older client, or a connection closed before its
        // release) holds its share until the join deadline: it must not starve the relayed throughput run.
        '[relay]\nbytes_per_second = 10000000000\nmax_sessions_per_device = 100000\nmax_sessions_per_source = 100000',
        '[limits]\nrequests_per_source_per_min = 0\nrequests_per_device_per_min = 0',
        `[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metricsPort}`,
      ].join('\n'),
    });
    // The agent takes 32 sessions at once (the default is 16).
    await writeFile(setup.agentConfig, (await readFile(setup.agentConfig, 'utf8')).replace('[dial]\n', '[dial]\nmax_concurrent = 32\n'));
    const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
    programs.push(server);
    for (let i = 0; i < 100 && server.child.exitCode === null; i++) {
      // Listening at warn level logs nothing: wait for the TLS port instead.
      const up = await new Promise<boolean>((r) => {
        const s = netConnect(setup.tlsPort, '127.0.0.1', () => (s.destroy(), r(true)));
        s.once('error', () => r(false));
      });
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentNodeFlags() });
    programs.push(agent);
    await new Promise((r) => setTimeout(r, 1500)); // first registration
    const job = join(dir, 'job.json');
    await writeFile(
      job,
      JSON.stringify({
        tlsPort: setup.tlsPort,
        caPem: setup.caPem,
        equipmentId: setup.equipmentId,
        password: setup.password,
        service: 'echo',
        rounds: o.quick ? 30 : 100,
        concurrency: o.concurrency,
        seconds: o.quick ? 3 : 8,
        serverPid: server.child.pid,
        agentPid: agent.child.pid,
      }),
    );
    let connect: Record<string, unknown> = NO_CONNECT;
    if (o.connect) {
      const load = run(null, [script('connect-load'), job]);
      const loaded = await load.first;
      await load.stop();
      connect = { ...loaded, serverTls: await tlsHandshakes(metricsPort) };
    }
    if (!o.tunnel) return { connect };

    const tlsEcho = run(null, [script('tls-echo'), join(dir, 'server.pem'), join(dir, 'server.key')]);
    stoppers.push(() => tlsEcho.stop());
    const { port: tlsEchoPort } = (await tlsEcho.first) as { port: number };
    const base = [
      ...connectArgs(setup, 'echo'),
      // A tunnel per connection, as these rows always measured; a session's stream: bench server --only sessions.
      '--session-idle-ms',
      '0',
    ];
    const directPort = await freePort();
    const relayPort = await freePort();
    const directClient = startProgram('client', [...base, '--listen', `127.0.0.1:${directPort}`]);
    const relayedClient = startProgram('client', [
      ...base,
      '--listen',
      `127.0.0.1:${relayPort}`,
      '--advertise-port',
      String(await freePort()),
    ]);
    programs.push(directClient, relayedClient);
    await Promise.all([waitServing(directClient), waitServing(relayedClient)]);
    const data = randomBytes(o.quick ? 8 * 1024 * 1024 : 32 * 1024 * 1024);
    const rounds = o.quick ? 2 : 3;
    const fresh = (): { mbps: number; cpu: CpuPerGb; gb: number } => ({ mbps: 0, cpu: {}, gb: 0 });
    const plainTls = fresh();
    const viaTls = (): Socket => {
      const s = tlsConnect({ host: '127.0.0.1', port: tlsEchoPort, ca: setup.caPem, servername: 'localhost' }, () => s.end(data));
      return s;
    };
    // One round each, not measured, before the measured ones: a fresh process's first round compiles
    // its byte path (the JIT) and would count that in its CPU-s per GB (issue 15: ~1 CPU-s per GB of
    // a 3-round row, more in the relay's 2-process-hop rows than in plain TLS).
    const warmUp = (open: () => Socket): Promise<number> => roundTrip(open, data);
    await warmUp(viaTls);
    await measuredMbps(viaTls, data, rounds, { 'tls-echo': tlsEcho.pid }, plainTls);
    const ends = { client: 0, server: server.child.pid!, agent: agent.child.pid! };
    const direct = fresh();
    await warmUp(viaTcp(directPort, data));
    await measuredMbps(viaTcp(directPort, data), data, rounds, { ...ends, client: directClient.child.pid! }, direct);
    // A/B in this run: the relay with TLS legs, as before plain legs (issue 15). Its own server has
    // relay.plain_legs = false, so client and agent fall back to TLS joins as with an older server.
    const before = await relayWithTlsLegs(join(dir, 'tls-legs'), echoPort);
    stoppers.push(before.stop);
    const relay = fresh();
    const relayTlsLegs = fresh();
    await warmUp(viaTcp(relayPort, data));
    await warmUp(viaTcp(before.port, data));
    for (let i = 0; i < rounds; i++) {
      // Interleaved, best of each: the machine's load drifts between rounds.
      await measuredMbps(viaTcp(relayPort, data), data, 1, { ...ends, client: relayedClient.child.pid! }, relay);
      await measuredMbps(viaTcp(before.port, data), data, 1, before.pids, relayTlsLegs);
    }
    return {
      connect,
      tunnel: {
        payloadBytes: data.length,
        plainTlsMbps: plainTls.mbps,
        directTunnelMbps: direct.mbps,
        relayedTunnelMbps: relay.mbps,
        relayedTlsLegsMbps: relayTlsLegs.mbps,
      },
      tunnelCpu: { plainTls: perGb(plainTls), direct: perGb(direct), relayed: perGb(relay), relayedTlsLegs: perGb(relayTlsLegs) },
    };
  } finally {
    await Promise.all(programs.map((p) => p.stop()));
    await Promise.all(stoppers.map((s) => s()));
    await echo.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A server without plain relay legs, its agent, and a relayed `--listen` client: the relay as before issue 15. */
async function relayWithTlsLegs(
  dir: string,
  echoPort: number,
): Promise<{ port: number; pids: Record<string, number>; stop: () => Promise<void> }> {
  await mkdir(dir, { recursive: true });
  const setup = await createLoopbackSetup({
    dir,
    services: { echo: `127.0.0.1:${echoPort}` },
    directDialOnly: true,
    serverExtra: '[relay]\nbytes_per_second = 10000000000\nplain_legs = false',
  });
  const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
  await server.waitFor((l) => l.msg === 'rendezvous server listening');
  const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentNodeFlags() });
  await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
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
  await waitServing(client);
  return {
    port,
    pids: { client: client.child.pid!, server: server.child.pid!, agent: agent.child.pid! },
    stop: () => Promise.all([client, agent, server].map((p) => p.stop())).then(() => undefined),
  };
}

const f0 = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : '-');
const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-');
const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '-');

export async function serverBench(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { out: { type: 'string' }, quick: { type: 'boolean' }, only: { type: 'string' }, concurrency: { type: 'string' } },
  });
  const quick = values.quick ?? false;
  const only = values.only;
  // --only connections: every figure of issue 15 (handshakes, time line, requests, tunnels) in one run.
  const CONNECTIONS = ['handshake', 'timeline', 'connect', 'tunnel', 'sessions'];
  const want = (s: string): boolean => only === undefined || only === s || (only === 'connections' && CONNECTIONS.includes(s));
  const say = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  let reg: Record<string, number> = {};
  if (want('udp')) {
    say(`registrations (UDP, ${HAVE_TASKSET ? 'target on core 0, load on core 1' : 'not pinned: no taskset or one core'}) ...`);
    // Best of 5 alternating rounds: the machines are shared, and a neighbour's burst only ever slows a run.
    reg = await registrations({ seconds: quick ? 2 : 5, rounds: quick ? 1 : 5 });
  }
  let fleet: FleetFigures | null = null;
  if (want('fleet')) {
    say('registrations on N nodes over a Redis Cluster ...');
    fleet = await fleetBench({ seconds: quick ? 2 : 4, sizes: [2, 4], rounds: quick ? 1 : 3, crossNode: true, quick });
  }
  let mem: Record<string, Record<string, number>> = {};
  if (want('memory')) {
    say('memory per device (100k, 1M) ...');
    mem = await memory([100_000, 1_000_000]);
  }
  let e2e: { connect: Record<string, unknown>; tunnel?: Record<string, number>; tunnelCpu?: Record<string, CpuPerGb> } = {
    connect: NO_CONNECT,
  };
  if (want('connect') || want('tunnel')) {
    say('connection requests and tunnel throughput (real server, agent and clients) ...');
    e2e = await endToEnd({ quick, concurrency: Number(values.concurrency ?? 8), connect: want('connect'), tunnel: want('tunnel') });
  }
  let handshakes: Record<string, HandshakeFigure> = {};
  if (want('handshake')) {
    say('TLS handshake cost by server key, full and resumed ...');
    handshakes = await handshakeCosts(quick ? 100 : 300);
  }
  let timelines: { direct: Timeline[]; relayed: Timeline[] } = { direct: [], relayed: [] };
  if (want('timeline')) {
    say('the time line of one connection, direct and relayed (server and agent at log level info) ...');
    timelines = await connectionTimelines(quick ? 5 : 15);
  }
  let sessions: SessionFigures | null = null;
  if (want('sessions')) {
    say('sessions with streams: a second stream, and a web page through --listen ...');
    sessions = await sessionBench({ quick });
  }
  const median = (xs: readonly Timeline[]): number => {
    const s = xs.map((x) => x.connectMs).sort((a, b) => a - b);
    return s.length ? s[Math.floor(s.length / 2)]! : NaN;
  };
  const directConnectP50 = median(timelines.direct);
  const relayedConnectP50 = median(timelines.relayed);
  const c = e2e.connect as {
    serverTls?: { full: number; resumed: number };
    tlsConnect: { p50Ms: number; p99Ms: number; serverCpuMsPerTlsConnect: number };
    sequential: {
      p50Ms: number;
      p99Ms: number;
      n: number;
      serverCpuMsPerRequest?: number;
      agentCpuMsPerRequest?: number;
      clientCpuMsPerRequest?: number;
    };
    freshClient?: { p50Ms: number; p99Ms: number; n: number };
    concurrent: {
      p50Ms: number;
      p99Ms: number;
      requestsPerSecond: number;
      concurrency: number;
      failures: number;
      n: number;
      serverCpuMsPerRequest: number;
      agentCpuMsPerRequest: number;
      clientCpuMsPerRequest: number;
    };
  };
  const tls = c.tlsConnect;
  const t = e2e.tunnel ?? { plainTlsMbps: NaN, directTunnelMbps: NaN, relayedTunnelMbps: NaN, relayedTlsLegsMbps: NaN };
  const m = (k: string, f: string): number => mem[k]?.[f] ?? NaN;
  const r = (k: string): number => reg[k] ?? NaN;
  const rows: [string, string, string, string][] = [
    [
      'UDP answers/s, one core: bare Node UDP echo server (per wall second / per CPU-second)',
      `${f0(r('echoPerSecond'))} / ${f0(r('echoPerCpuSecond'))}`,
      'baseline',
      '1.00',
    ],
    [
      'registrations/s, one core: authenticated, in-memory (per wall s / per CPU-s)',
      `${f0(r('memoryBackendPerSecond'))} / ${f0(r('memoryBackendPerCpuSecond'))}`,
      '>= 0.8',
      `${f2(r('memoryBackendPerSecond') / r('echoPerSecond'))} / ${f2(r('memoryBackendPerCpuSecond') / r('echoPerCpuSecond'))}`,
    ],
    [
      'CPU per answer, user + kernel (µs): echo / registration',
      `${f2(r('echoUserUs'))} + ${f2(r('echoSystemUs'))} / ${f2(r('memoryBackendUserUs'))} + ${f2(r('memoryBackendSystemUs'))}`,
      'report',
      '-',
    ],
    [
      'registrations/s, one core: authenticated, Redis backend (per wall s / per CPU-s of the node)',
      `${f0(r('redisBackendPerSecond'))} / ${f0(r('redisBackendPerCpuSecond'))}`,
      'report',
      `${f2(r('redisBackendPerSecond') / r('echoPerSecond'))} / ${f2(r('redisBackendPerCpuSecond') / r('echoPerCpuSecond'))}`,
    ],
    ['registrations per CPU-second of redis-server (Lua compare-and-set)', f0(r('registrationsPerRedisCpuSecond')), 'report', '-'],
    ['Redis memory per device (bytes)', f0(r('redisBytesPerDevice')), 'report', '-'],
    ['memory per device at 100k, live heap (bytes)', f0(m('compact-100000', 'heapBytesPerDevice')), '<= 200', '-'],
    ['memory per device at 100k, RSS (bytes)', f0(m('compact-100000', 'rssBytesPerDevice')), '<= 200', '-'],
    ['memory per device at 1M, live heap (bytes)', f0(m('compact-1000000', 'heapBytesPerDevice')), '<= 200', '-'],
    ['memory per device at 1M, RSS (bytes)', f0(m('compact-1000000', 'rssBytesPerDevice')), '<= 200', '-'],
    [
      '(for scale: Map of objects at 100k, live heap / RSS)',
      `${f0(m('map-100000', 'heapBytesPerDevice'))} / ${f0(m('map-100000', 'rssBytesPerDevice'))}`,
      '-',
      '-',
    ],
    ['direct TLS connect to the server, p50 / p99 (ms)', `${f1(tls.p50Ms)} / ${f1(tls.p99Ms)}`, 'baseline', '1.00'],
    [
      'time to connect, one request at a time (one client: its server connection kept), p50 / p99 (ms)',
      `${f1(c.sequential.p50Ms)} / ${f1(c.sequential.p99Ms)}`,
      'report',
      `${f1(c.sequential.p50Ms / tls.p50Ms)} / ${f1(c.sequential.p99Ms / tls.p99Ms)}`,
    ],
    [
      "time to connect, a fresh client's first request (new process: full TLS handshake, nothing kept), p50 / p99 (ms)",
      c.freshClient ? `${f1(c.freshClient.p50Ms)} / ${f1(c.freshClient.p99Ms)}` : '-',
      'report',
      c.freshClient ? `${f1(c.freshClient.p50Ms / tls.p50Ms)} / ${f1(c.freshClient.p99Ms / tls.p99Ms)}` : '-',
    ],
    [
      `time to connect, ${c.concurrent.concurrency} in flight, p50 / p99 (ms)`,
      `${f1(c.concurrent.p50Ms)} / ${f1(c.concurrent.p99Ms)}`,
      'report',
      `${f1(c.concurrent.p50Ms / tls.p50Ms)} / ${f1(c.concurrent.p99Ms / tls.p99Ms)}`,
    ],
    [
      `connection requests/s end to end (${c.concurrent.concurrency} in flight, one device)`,
      f1(c.concurrent.requestsPerSecond),
      'report',
      `${f2(c.concurrent.requestsPerSecond / (1000 / tls.p50Ms))} of sequential TLS connects/s`,
    ],
    [
      'server CPU per request vs per direct TLS connect (ms)',
      `${f2(c.concurrent.serverCpuMsPerRequest)} vs ${f2(tls.serverCpuMsPerTlsConnect)}`,
      'report',
      f1(c.concurrent.serverCpuMsPerRequest / tls.serverCpuMsPerTlsConnect),
    ],
    ['connection requests per server CPU-second (one core)', f0(1000 / c.concurrent.serverCpuMsPerRequest), 'report', '-'],
    [
      'server TLS handshakes (clients and devices) in the connect runs: full / resumed',
      `${c.serverTls?.full ?? '-'} / ${c.serverTls?.resumed ?? '-'}`,
      'report',
      '-',
    ],
    [
      'one request at a time: server / agent / client CPU per request (ms)',
      `${f2(c.sequential.serverCpuMsPerRequest ?? NaN)} / ${f2(c.sequential.agentCpuMsPerRequest ?? NaN)} / ${f2(c.sequential.clientCpuMsPerRequest ?? NaN)}`,
      'report',
      `${f1((c.sequential.serverCpuMsPerRequest ?? NaN) / tls.serverCpuMsPerTlsConnect)} server CPU per direct TLS connect`,
    ],
    [
      'agent / client CPU per request (ms)',
      `${f2(c.concurrent.agentCpuMsPerRequest)} / ${f2(c.concurrent.clientCpuMsPerRequest)}`,
      'report',
      '-',
    ],
    ...(['rsa-full', 'ec-full', 'rsa-resumed', 'ec-resumed'] as const).map((k): [string, string, string, string] => {
      const h = handshakes[k];
      const base = handshakes['rsa-full'];
      const label = {
        'rsa-full': 'RSA 2048, full (the old default)',
        'ec-full': 'ECDSA P-256, full (the default)',
        'rsa-resumed': 'RSA 2048, resumed (ticket)',
        'ec-resumed': 'ECDSA P-256, resumed (ticket)',
      }[k];
      return [
        `TLS handshake to the server: ${label}: server CPU / client CPU / client p50 (ms)`,
        h
          ? `${f2(h.serverCpuMs)} / ${f2(h.clientCpuMs)} / ${f2(h.p50Ms)}${k.endsWith('resumed') ? ` (${(h.resumedShare * 100).toFixed(0)}% resumed)` : ''}`
          : '-',
        k === 'rsa-full' ? 'baseline' : 'report',
        h && base ? `${f2(h.serverCpuMs / base.serverCpuMs)} server CPU` : '-',
      ];
    }),
    ['tunnel throughput: plain TLS (Mbit/s, both directions)', f0(t.plainTlsMbps!), 'baseline', '1.00'],
    ['tunnel throughput: direct tunnel', f0(t.directTunnelMbps!), 'report', f2(t.directTunnelMbps! / t.plainTlsMbps!)],
    ['tunnel throughput: relayed tunnel (plain legs)', f0(t.relayedTunnelMbps!), '>= 0.7', f2(t.relayedTunnelMbps! / t.plainTlsMbps!)],
    [
      'tunnel throughput: relayed tunnel, TLS legs (before; same run)',
      f0(t.relayedTlsLegsMbps!),
      'report',
      f2(t.relayedTlsLegsMbps! / t.plainTlsMbps!),
    ],
    ['tunnel throughput: relayed / direct', '-', '>= 0.7', f2(t.relayedTunnelMbps! / t.directTunnelMbps!)],
    ...(['plainTls', 'direct', 'relayed', 'relayedTlsLegs'] as const).map((k): [string, string, string, string] => {
      const cpu = e2e.tunnelCpu?.[k];
      const total = (x: CpuPerGb | undefined): number => (x ? Object.values(x).reduce((a, b) => a + b, 0) : NaN);
      return [
        `tunnel CPU-seconds per GB carried, ${{ plainTls: 'plain TLS', direct: 'direct tunnel', relayed: 'relayed (plain legs)', relayedTlsLegs: 'relayed, TLS legs' }[k]}: total (${cpu ? Object.keys(cpu).join(' / ') : 'by process'})`,
        cpu ? `${f2(total(cpu))} (${Object.values(cpu).map(f2).join(' / ')})` : '-',
        'report',
        f2(total(cpu) / total(e2e.tunnelCpu?.plainTls)),
      ];
    }),
    ...(['direct', 'relayed'] as const).map((k): [string, string, string, string] => {
      // An estimate from the CPU rows above, not a measurement: see cpu-bound.ts.
      const cpu = e2e.tunnelCpu;
      const measured = (k === 'direct' ? t.directTunnelMbps! : t.relayedTunnelMbps!) / t.plainTlsMbps!;
      return [
        `tunnel throughput, ${k === 'direct' ? 'direct' : 'relayed (plain legs)'} vs plain TLS: ESTIMATE (not measured) of what the CPU-s per GB above allow, on ${TUNNEL_CORES} cores / with a core per process (the slowest process sets the rate); the ratio column: measured`,
        `${f2(boundRatio(cpu?.[k], cpu?.plainTls, TUNNEL_CORES))} / ${f2(boundRatio(cpu?.[k], cpu?.plainTls, Infinity))}`,
        'report',
        f2(measured),
      ];
    }),
    ['time to connect (time line runs, info logs), direct, p50 (ms)', f1(directConnectP50), 'baseline', '1.00'],
    [
      'time to connect, relayed (the device cannot dial the client), p50 (ms)',
      f1(relayedConnectP50),
      '<= 2',
      f2(relayedConnectP50 / directConnectP50),
    ],
    ...sessionRows(sessions),
  ];
  process.stdout.write('\n| figure | measured | target | ratio to baseline |\n|---|---|---|---|\n');
  for (const r of rows) process.stdout.write(`| ${r.join(' | ')} |\n`);
  if (timelines.direct.length) process.stdout.write(formatTimeline('time line of one direct connection', medianTimeline(timelines.direct)));
  if (timelines.relayed.length)
    process.stdout.write(formatTimeline('time line of one relayed connection', medianTimeline(timelines.relayed)));
  if (fleet) {
    process.stdout.write(fleetReport(fleet));
  }
  if (c.concurrent.failures > 0) process.stdout.write(`\n${c.concurrent.failures} of the concurrent requests failed\n`);
  const out = values.out ?? 'bench-server-results.json';
  await writeFile(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), cpus: cpus().length, pinned: HAVE_TASKSET, quick, registrations: reg, fleet, memory: mem, ...e2e, timelines, handshakes, sessions }, null, 2)}\n`,
  );
  process.stdout.write(`\nfigures written to ${out}\n`);
}
