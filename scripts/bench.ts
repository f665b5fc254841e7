#!/usr/bin/env node
/**
 * npm run bench [-- tunnel | agent | server | fleet | provision]: throughput through the real programs on loopback, as ratios against
 * a baseline measured in the same run (plain TCP to the same echo service), never as absolute
 * targets (the machines are noisy). Prints a table and writes bench-results.json (--out FILE).
 * `server`: the rendezvous server against its limits (scripts/bench/server.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLoopbackSetup, connectArgs } from './lib/loopback-setup.js';
import { freePort } from './lib/free-port.js';
import { startProgram, type Program } from './lib/program.js';
import { serverNodeFlags } from './lib/server-unit.js';
import { agentNodeFlags } from './lib/agent-unit.js';
import { bestMbps, startEchoServer, viaTcp, waitServing } from './bench/throughput.js';

const PAYLOAD_BYTES = 32 * 1024 * 1024;
const ROUNDS = 3;

async function tunnelBench(): Promise<Record<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-'));
  const programs: Program[] = [];
  const echo = await startEchoServer();
  try {
    const echoPort = echo.port;
    const setup = await createLoopbackSetup({
      dir,
      services: { echo: `127.0.0.1:${echoPort}` },
      serverExtra: '[relay]\nbytes_per_second = 10000000000',
      // The patent's dial and the relay only, so the closed-port client below is really relayed.
      directDialOnly: true,
    });
    const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentNodeFlags() });
    programs.push(agent);
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
    const base = [
      ...connectArgs(setup, 'echo'),
      // A tunnel per connection, as these rows always measured; a session's stream: bench server --only sessions.
      '--session-idle-ms',
      '0',
    ];
    const directPort = await freePort();
    const relayPort = await freePort();
    const direct = startProgram('client', [...base, '--listen', `127.0.0.1:${directPort}`]);
    // A closed advertised port: the device's dial is refused, so every tunnel is relayed.
    const relayed = startProgram('client', [...base, '--listen', `127.0.0.1:${relayPort}`, '--advertise-port', String(await freePort())]);
    programs.push(direct, relayed);
    await Promise.all([waitServing(direct), waitServing(relayed)]);
    const data = randomBytes(PAYLOAD_BYTES);
    const plain = await bestMbps(viaTcp(echoPort, data), data, ROUNDS);
    const tunnel = await bestMbps(viaTcp(directPort, data), data, ROUNDS);
    const relay = await bestMbps(viaTcp(relayPort, data), data, ROUNDS);
    return { plainTcpMbps: plain, directTunnelMbps: tunnel, relayedTunnelMbps: relay };
  } finally {
    await Promise.all(programs.map((p) => p.stop()));
    await echo.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  // npm run bench -- agent: the agent's footprint (scripts/bench/agent.ts); -- server: scripts/bench/server.ts.
  if (process.argv[2] === 'agent') return (await import('./bench/agent.js')).runAgentBench(process.argv.slice(3));
  // -- relay-options: the relay's variants compared in one process (scripts/bench/relay-options.ts).
  if (process.argv[2] === 'relay-options') return (await import('./bench/relay-options.js')).relayOptionsBench(process.argv.slice(3));
  if (process.argv[2] === 'server') return (await import('./bench/server.js')).serverBench(process.argv.slice(3));
  // -- fleet: N nodes over a Redis Cluster, and connect across nodes (scripts/bench/fleet.ts).
  if (process.argv[2] === 'fleet') return (await import('./bench/fleet.js')).fleetMain(process.argv.slice(3));
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { out: { type: 'string' }, devices: { type: 'string' }, jobs: { type: 'string' } },
  });
  // npm run bench -- provision: a factory batch of 10,000 devices (scripts/bench/provision.ts).
  if (positionals[0] === 'provision') {
    const { provisionBench } = await import('./bench/provision.js');
    const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
    await provisionBench({ devices: num(values.devices), jobs: num(values.jobs), out: values.out });
    return;
  }
  const r = await tunnelBench();
  const rows = [
    ['plain TCP to the echo service (baseline)', r.plainTcpMbps!, 1],
    ['direct tunnel (client -> TLS 1.3 PSK -> agent)', r.directTunnelMbps!, r.directTunnelMbps! / r.plainTcpMbps!],
    ['relayed tunnel (+ TLS to and from the server)', r.relayedTunnelMbps!, r.relayedTunnelMbps! / r.plainTcpMbps!],
  ] as const;
  process.stdout.write(`tunnel throughput on loopback, ${PAYLOAD_BYTES / 1024 / 1024} MiB each way, best of ${ROUNDS}\n\n`);
  process.stdout.write('| path | Mbit/s (both directions) | ratio to baseline |\n|---|---|---|\n');
  for (const [name, mbps, ratio] of rows) process.stdout.write(`| ${name} | ${mbps.toFixed(0)} | ${ratio.toFixed(2)} |\n`);
  process.stdout.write(`\nrelayed / direct: ${(r.relayedTunnelMbps! / r.directTunnelMbps!).toFixed(2)}\n`);
  await writeFile(
    values.out ?? 'bench-results.json',
    `${JSON.stringify({ date: new Date().toISOString(), payloadBytes: PAYLOAD_BYTES, ...r }, null, 2)}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
