/**
 * Test fixture: two real server nodes sharing one real redis-server or a real Redis Cluster
 * (scripts/lib/redis-cluster.ts), and the real agent registered with node 1. The nodes share the PKI and master key (one fleet) and differ in ports and node ID.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLoopbackSetup, type LoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { startProgram, type Program } from '../../scripts/lib/program.js';
import type { RedisCluster } from '../../scripts/lib/redis-cluster.js';
import type { RedisProcess } from '../../scripts/lib/redis-process.js';
import { tempDir, type Scope } from './flow.js';

export interface TwoNodes {
  readonly setup: LoopbackSetup;
  readonly nodes: readonly [Program, Program];
  readonly tlsPorts: readonly [number, number];
  readonly udpPorts: readonly [number, number];
  readonly metricsPorts: readonly [number, number];
  readonly agent: Program;
  /** `peerlink connect` arguments against node 0 or 1. */
  clientArgs(node: 0 | 1, service: string, extra?: readonly string[]): string[];
}

export async function startTwoNodes(
  t: Scope,
  o: {
    redis: RedisProcess | RedisCluster;
    services: Readonly<Record<string, string>>;
    serverExtra?: string;
    directDialOnly?: boolean;
    /** Node 2's UDP bind host (e.g. "::": registrations over IPv6 as well); default as node 1's. */
    node2UdpHost?: string;
  },
): Promise<TwoNodes> {
  const dir = await tempDir(t, 'peerlink-nodes-');
  const metricsPorts = [await freePort(), await freePort()] as const;
  const nodeTable = (i: number): string =>
    `[redis]\n${redisSetting(o.redis)}\nnode_id = "node-${i + 1}"\n[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metricsPorts[i]}\n${o.serverExtra ?? ''}`;
  const setup = await createLoopbackSetup({
    dir,
    services: o.services,
    serverExtra: nodeTable(0),
    ...(o.directDialOnly ? { directDialOnly: true } : {}),
  });
  // Node 2: the same settings on other ports, under another node ID.
  const [udp2, tls2] = [await freePort(), await freePort()];
  const text = (await readFile(setup.serverConfig, 'utf8'))
    .replace(`host = "127.0.0.1"\nport = ${setup.udpPort}`, `host = "${o.node2UdpHost ?? '127.0.0.1'}"\nport = ${setup.udpPort}`)
    .replace(`port = ${setup.udpPort}`, `port = ${udp2}`)
    .replace(`port = ${setup.tlsPort}`, `port = ${tls2}`)
    .replace('node_id = "node-1"', 'node_id = "node-2"')
    .replace(`port = ${metricsPorts[0]}`, `port = ${metricsPorts[1]}`);
  const config2 = join(dir, 'server-2.toml');
  await writeFile(config2, text);
  const nodes = [startProgram('server', ['--config', setup.serverConfig]), startProgram('server', ['--config', config2])] as const;
  for (const n of nodes) t.teardown(() => n.stop().then(() => undefined));
  await Promise.all(nodes.map((n) => n.waitFor((l) => l.msg === 'rendezvous server listening')));
  const agent = startProgram('agent', ['--config', setup.agentConfig]);
  t.teardown(() => agent.stop().then(() => undefined));
  await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
  const tlsPorts = [setup.tlsPort, tls2] as const;
  return {
    setup,
    nodes,
    tlsPorts,
    udpPorts: [setup.udpPort, udp2],
    metricsPorts,
    agent,
    clientArgs: (node, service, extra = []) => [
      'connect',
      setup.equipmentId,
      '--server',
      `127.0.0.1:${tlsPorts[node]}`,
      '--server-name',
      'localhost',
      '--ca',
      setup.caFile,
      '--password-file',
      setup.passwordFile,
      '--service',
      service,
      ...extra,
    ],
  };
}

/** The `[redis]` line that points a node at a single Redis or at a cluster's seed nodes. */
export function redisSetting(r: RedisProcess | RedisCluster): string {
  return 'seeds' in r ? `cluster_nodes = [${r.seeds.map((s) => `"${s}"`).join(', ')}]` : `url = "${r.url}"`;
}

/** GET a path of a metrics listener: status and body. */
export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one Prometheus sample (name with labels as printed), or undefined. */
export function sample(metrics: string, nameAndLabels: RegExp): number | undefined {
  for (const line of metrics.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^(\S+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m && nameAndLabels.test(m[1]!)) return Number(m[2]);
  }
  return undefined;
}
