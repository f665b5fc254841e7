/**
 * The programs under soak, on loopback: the real peerlink-server (one node, or two nodes sharing a
 * real redis-server), a real peerlink-agent registered with (the first) node and a TCP echo service
 * behind it. Each program is started with the resource probe preloaded (resource-probe.ts) and its
 * metrics listener on; the servers with the node flags of systemd/peerlink-server.service. Per-source limits are off: on loopback all simulated devices share a handful
 * of source addresses, which in the field would be ten thousand different homes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLoopbackSetup, type LoopbackSetup } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { DIST, startProgram, type Program } from '../lib/program.js';
import { startRedis, type RedisProcess } from '../lib/redis-process.js';
import { agentNodeFlags } from '../lib/agent-unit.js';
import { serverNodeFlags } from '../lib/server-unit.js';

export const ECHO_SERVICE = 'echo';
/** The agent's own minimum interval (agent/device/settings.ts). */
const AGENT_INTERVAL_MS = 15_000;
const START_TIMEOUT_MS = 30_000;
const PROBE = join(DIST, 'scripts', 'soak', 'resource-probe.js');
// The server's systemd unit: the soak runs the server with the node flags production runs it with.
export { SERVER_UNIT, nodeFlagsOfUnit } from '../lib/server-unit.js';

export interface Watched {
  readonly name: string;
  readonly program: Program;
  readonly probeFile: string;
  /** Metrics port (servers only). */
  readonly metricsPort?: number;
}

export interface SoakSystem {
  readonly setup: LoopbackSetup;
  readonly servers: readonly Watched[];
  readonly agent: Watched;
  /** UDP registration ports of the nodes, in node order. */
  readonly udpPorts: readonly number[];
  /** The TLS port a client should use (node 2 in the two-node run: the request crosses nodes). */
  readonly clientTlsPort: number;
  /** A program that exited before stop(). */
  crashed(): string[];
  stop(): Promise<void>;
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

function probeEnv(probeFile: string): NodeJS.ProcessEnv {
  const importFlag = `--import=${pathToFileURL(PROBE).href}`;
  return { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${importFlag}`.trim(), PEERLINK_SOAK_PROBE_FILE: probeFile };
}

export async function startSoakSystem(o: { dir: string; nodes: 1 | 2 }): Promise<SoakSystem> {
  const echo = await echoServer();
  const metricsPorts = [await freePort(), await freePort()];
  let redis: RedisProcess | null = null;
  if (o.nodes === 2) redis = await startRedis();
  const table = (i: number): string =>
    [
      redis ? `[redis]\nurl = "${redis.url}"\nnode_id = "node-${i + 1}"` : '',
      '[metrics]',
      'enabled = true',
      'host = "127.0.0.1"',
      `port = ${metricsPorts[i]}`,
      '[limits]',
      'registrations_per_source_per_s = 0',
      'requests_per_source_per_min = 0',
    ].join('\n');
  const setup = await createLoopbackSetup({
    dir: o.dir,
    services: { [ECHO_SERVICE]: `127.0.0.1:${echo.port}` },
    registerIntervalMs: AGENT_INTERVAL_MS,
    serverExtra: table(0),
  });
  const configs = [setup.serverConfig];
  const udpPorts = [setup.udpPort];
  const tlsPorts = [setup.tlsPort];
  if (o.nodes === 2) {
    const [udp2, tls2] = [await freePort(), await freePort()];
    const text = (await readFile(setup.serverConfig, 'utf8'))
      .replace(`port = ${setup.udpPort}`, `port = ${udp2}`)
      .replace(`port = ${setup.tlsPort}`, `port = ${tls2}`)
      .replace('node_id = "node-1"', 'node_id = "node-2"')
      .replace(`port = ${metricsPorts[0]}`, `port = ${metricsPorts[1]}`);
    const config2 = join(o.dir, 'server-2.toml');
    await writeFile(config2, text);
    configs.push(config2);
    udpPorts.push(udp2);
    tlsPorts.push(tls2);
  }
  const stopping = { now: false };
  const crashes: string[] = [];
  const watch = (name: string, p: Program): void => {
    p.child.once('exit', (code, signal) => {
      if (!stopping.now) crashes.push(`${name} exited (${code ?? signal})`);
    });
  };
  const nodeArgs = serverNodeFlags();
  const servers: Watched[] = configs.map((config, i) => {
    const probeFile = join(o.dir, `probe-server-${i + 1}.json`);
    const program = startProgram('server', ['--config', config], { env: probeEnv(probeFile), nodeArgs });
    const name = o.nodes === 2 ? `server node-${i + 1}` : 'server';
    watch(name, program);
    return { name, program, probeFile, metricsPort: metricsPorts[i]! };
  });
  let agent: Watched | null = null;
  const stop = async (): Promise<void> => {
    stopping.now = true;
    await Promise.all([agent?.program.stop(), ...servers.map((s) => s.program.stop())]);
    await redis?.stop();
    await new Promise<void>((r) => echo.server.close(() => r()));
  };
  try {
    await Promise.all(servers.map((s) => s.program.waitFor((l) => l.msg === 'rendezvous server listening', START_TIMEOUT_MS)));
    const probeFile = join(o.dir, 'probe-agent.json');
    // The agent unit's node flags, as production runs it (systemd/peerlink-agent.service).
    const program = startProgram('agent', ['--config', setup.agentConfig], { env: probeEnv(probeFile), nodeArgs: agentNodeFlags() });
    watch('agent', program);
    agent = { name: 'agent', program, probeFile };
    await program.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'), START_TIMEOUT_MS);
  } catch (err) {
    await stop();
    throw err;
  }
  const started = agent;
  return {
    setup,
    servers,
    agent: started,
    udpPorts,
    clientTlsPort: tlsPorts[tlsPorts.length - 1]!,
    crashed: () => [...crashes],
    stop,
  };
}
