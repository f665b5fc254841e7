/**
 * Connect across nodes (part of `npm run bench -- fleet`): two real server nodes over a real Redis
 * Cluster (3 primaries + 3 replicas), the real agent registered with node 1 (its UDP mapping and
 * its TLS attach are at node 1). A client asking node 1 is served there; a client asking node 2
 * has its request routed to node 1 through Redis (sharded pub/sub, the pending request in Redis,
 * the verdict back), as in test/server/two-nodes-cluster.spec.ts. The two clients alternate, one
 * request at a time, so a neighbour's burst hits both alike; the time to connect is the client
 * library's, from the request until the end-to-end channel is up.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type Client } from '../../agent/client/client.js';
import { createLoopbackSetup } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { startProgram, type Program } from '../lib/program.js';
import { serverNodeFlags } from '../lib/server-unit.js';
import { agentNodeFlags } from '../lib/agent-unit.js';
import { startRedisCluster } from '../lib/redis-cluster.js';
import { startEchoServer } from './throughput.js';

export interface Latency {
  readonly n: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
}

export interface CrossNodeFigures {
  readonly rounds: number;
  readonly sameNode: Latency;
  readonly crossNode: Latency;
  readonly failures: number;
}

const latency = (xs: readonly number[]): Latency => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number): number => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN);
  return { n: s.length, p50Ms: at(0.5), p90Ms: at(0.9) };
};

export async function crossNodeConnect(o: { rounds: number }): Promise<CrossNodeFigures> {
  process.stderr.write('bench: fleet: connect across nodes (2 nodes, Redis Cluster, real agent) ...\n');
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-cross-'));
  const cluster = await startRedisCluster();
  const echo = await startEchoServer();
  const programs: Program[] = [];
  const clients: Client[] = [];
  try {
    const nodeTable = (i: number): string =>
      [
        `[redis]\ncluster_nodes = [${cluster.seeds.map((s) => `"${s}"`).join(', ')}]\nnode_id = "bench-${i + 1}"`,
        '[limits]\nrequests_per_source_per_min = 0\nrequests_per_device_per_min = 0',
      ].join('\n');
    const setup = await createLoopbackSetup({
      dir,
      services: { echo: `127.0.0.1:${echo.port}` },
      directDialOnly: true,
      serverExtra: nodeTable(0),
    });
    const [udp2, tls2] = [await freePort(), await freePort()];
    const config2 = join(dir, 'server-2.toml');
    await writeFile(
      config2,
      (await readFile(setup.serverConfig, 'utf8'))
        .replace(`port = ${setup.udpPort}`, `port = ${udp2}`)
        .replace(`port = ${setup.tlsPort}`, `port = ${tls2}`)
        .replace('node_id = "bench-1"', 'node_id = "bench-2"'),
    );
    const nodes = [
      startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() }),
      startProgram('server', ['--config', config2], { nodeArgs: serverNodeFlags() }),
    ];
    programs.push(...nodes);
    await Promise.all(nodes.map((n) => n.waitFor((l) => l.msg === 'rendezvous server listening')));
    const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentNodeFlags() });
    programs.push(agent);
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
    for (const port of [setup.tlsPort, tls2]) {
      const c = createClient({
        server: { host: '127.0.0.1', port },
        serverName: 'localhost',
        caPem: setup.caPem,
        equipmentId: setup.equipmentId,
        password: setup.password,
        service: 'echo',
        accept: { host: '127.0.0.1', port: 0 },
        // A whole rendezvous per open(): what this measures.
        sessionIdleMs: 0,
      });
      await c.start();
      clients.push(c);
    }
    const once = async (c: Client): Promise<number> => {
      const t0 = performance.now();
      const tunnel = await c.open(AbortSignal.timeout(30_000));
      const ms = performance.now() - t0;
      tunnel.stream.destroy();
      return ms;
    };
    // Warm-up: each path once (TLS session tickets, the nodes' routes, the scripts loaded).
    for (const c of clients) await once(c);
    const same: number[] = [];
    const cross: number[] = [];
    let failures = 0;
    for (let i = 0; i < o.rounds; i++) {
      for (const [c, into] of [
        [clients[0]!, same],
        [clients[1]!, cross],
      ] as const) {
        try {
          into.push(await once(c));
        } catch {
          failures++;
        }
      }
    }
    if (failures > 0) process.stderr.write(`bench: fleet: ${failures} requests across nodes failed\n`);
    return { rounds: o.rounds, sameNode: latency(same), crossNode: latency(cross), failures };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(programs.map((p) => p.stop()));
    await echo.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
