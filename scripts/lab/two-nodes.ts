/**
 * The multi-node lab: two rendezvous server nodes on two WAN addresses (130.74.23.6 and .7)
 * sharing one redis-server (in node 1's namespace, reached over the WAN), the device behind a
 * port-restricted NAT registered with node 1, and a client that asks node 2. The device's NAT
 * lets in only node 1's notifications, so node 2 must route the request to node 1.
 * Everything is removed afterwards.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackSetup } from '../lib/loopback-setup.js';
import { DIST, startProgram, type Program } from '../lib/program.js';
import { runClient, SERVER_TLS_PORT, SERVER_UDP_PORT, SERVICE_PORT, type ClientRun } from './cell.js';
import { inNs } from './exec.js';
import type { NatKind } from './nat.js';
import { ADDR, createLab, type Lab } from './topology.js';

/** Inside the lab's own namespace nothing else listens: the standard port is safe there. */
export const LAB_REDIS_PORT = 6379;

export interface TwoNodeResult {
  readonly client: ClientRun;
  readonly payloadSha: string;
  readonly registeredAs: string;
  readonly devicePublicAddress: string;
  readonly nodes: readonly [Program, Program];
}

export async function runTwoNodeCell(o: { client: NatKind; device: NatKind; payloadBytes?: number }): Promise<TwoNodeResult> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-lab2-'));
  const programs: Program[] = [];
  let lab: Lab | null = null;
  try {
    lab = await createLab({ client: { nat: o.client }, device: { nat: o.device }, secondServer: true });
    const redisUrl = `redis://${ADDR.server}:${LAB_REDIS_PORT}`;
    // Killed with the namespace's other processes when the lab is removed.
    spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.server,
        'redis-server',
        '--port',
        String(LAB_REDIS_PORT),
        '--bind',
        ADDR.server,
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
      ],
      { stdio: 'ignore' },
    );
    for (let i = 0; ; i++) {
      const pong = await inNs(lab.server2!, ['redis-cli', '-h', ADDR.server, '-p', String(LAB_REDIS_PORT), 'ping']).catch(() => '');
      if (pong.trim() === 'PONG') break;
      if (i > 100) throw new Error('lab: redis-server did not come up (reached from node 2 over the WAN)');
      await new Promise((r) => setTimeout(r, 100));
    }
    const setup = await createLoopbackSetup({
      dir,
      serverAddress: ADDR.server,
      ports: { udp: SERVER_UDP_PORT, tls: SERVER_TLS_PORT },
      services: { echo: `127.0.0.1:${SERVICE_PORT}` },
      registerIntervalMs: 15_000,
      serverExtra: `[redis]\nurl = "${redisUrl}"\nnode_id = "node-1"\ntls_address = "${ADDR.server}:${SERVER_TLS_PORT}"`,
    });
    const config2 = join(dir, 'server-2.toml');
    await writeFile(
      config2,
      (await readFile(setup.serverConfig, 'utf8'))
        .replace('node_id = "node-1"', 'node_id = "node-2"')
        .replace(`tls_address = "${ADDR.server}:`, `tls_address = "${ADDR.server2}:`),
    );
    spawn(
      'ip',
      ['netns', 'exec', lab.device.host, process.execPath, join(DIST, 'scripts', 'lab', 'echo-service.js'), String(SERVICE_PORT)],
      { stdio: 'ignore' },
    );
    const nodes = [
      startProgram('server', ['--config', setup.serverConfig], { netns: lab.server }),
      startProgram('server', ['--config', config2], { netns: lab.server2! }),
    ] as const;
    programs.push(...nodes);
    await Promise.all(nodes.map((n) => n.waitFor((l) => l.msg === 'rendezvous server listening')));
    await Promise.all(nodes.map((n) => n.waitFor((l) => l.msg === 'redis reachable: the shared registry is in use')));
    const agent = startProgram('agent', ['--config', setup.agentConfig], { netns: lab.device.host });
    programs.push(agent);
    const registered = await nodes[0].waitFor((l) => l.msg === 'S202 device registered', 30_000);
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'), 30_000);
    const payload = randomBytes(o.payloadBytes ?? 256 * 1024);
    const args = [
      'connect',
      setup.equipmentId,
      '--server',
      `${ADDR.server2}:${SERVER_TLS_PORT}`,
      '--server-name',
      'localhost',
      '--ca',
      setup.caFile,
      '--password-file',
      setup.passwordFile,
      '--service',
      'echo',
      '--stdio',
      '--accept',
      '0.0.0.0:5000',
      '--advertise-port',
      '5000',
      '--peer-timeout-ms',
      '4000',
    ];
    const client = await runClient(lab.client.host, args, payload, 30_000);
    return {
      client,
      payloadSha: createHash('sha256').update(payload).digest('hex'),
      registeredAs: String(registered.mapping ?? ''),
      devicePublicAddress: lab.device.publicAddress,
      nodes,
    };
  } finally {
    await Promise.all(programs.map((p) => p.stop(2000)));
    await lab?.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}
