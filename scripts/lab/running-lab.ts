/**
 * A lab with the real programs running, for specs that then do something to it (abuse, faults):
 * the topology, a throwaway PKI, the server in its namespace, an echo service and the agent on the
 * device, the device registered. stop() removes every process and namespace (also safe to call
 * after a failed start, and more than once).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackSetup, type LoopbackSetup } from '../lib/loopback-setup.js';
import { DIST, startProgram, type LogLine, type Program } from '../lib/program.js';
import { REGISTER_WAIT_MS, SERVER_TLS_PORT, SERVER_UDP_PORT, SERVICE_PORT } from './cell.js';
import { ADDR, createLab, type Lab, type SideSpec } from './topology.js';

export const SERVER_START_TIMEOUT_MS = 30_000;

export interface RunningLabOptions {
  readonly client: SideSpec;
  readonly device: SideSpec;
  /** Extra server settings (TOML). */
  readonly serverExtra?: string;
  readonly registerIntervalMs?: number;
}

export interface RunningLab {
  readonly lab: Lab;
  readonly setup: LoopbackSetup;
  readonly server: Program;
  readonly agent: Program;
  /** The server's log line for the device's registration (its mapping, its time). */
  readonly registered: LogLine;
  /** The client CLI's arguments up to (not including) the accept options: connect ID --server ... --service echo --stdio. */
  readonly clientArgs: readonly string[];
  stop(): Promise<void>;
}

export async function startRunningLab(o: RunningLabOptions): Promise<RunningLab> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-labrun-'));
  const programs: Program[] = [];
  let lab: Lab | null = null;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(programs.map((p) => p.stop(2000)));
    // Removes the namespaces and kills whatever still runs in them (the echo service).
    await lab?.destroy();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    lab = await createLab({ client: o.client, device: o.device });
    const setup = await createLoopbackSetup({
      dir,
      serverAddress: ADDR.server,
      ports: { udp: SERVER_UDP_PORT, tls: SERVER_TLS_PORT },
      services: { echo: `127.0.0.1:${SERVICE_PORT}` },
      registerIntervalMs: o.registerIntervalMs ?? 15_000,
      ...(o.serverExtra ? { serverExtra: o.serverExtra } : {}),
    });
    spawn(
      'ip',
      ['netns', 'exec', lab.device.host, process.execPath, join(DIST, 'scripts', 'lab', 'echo-service.js'), String(SERVICE_PORT)],
      { stdio: 'ignore' },
    );
    const server = startProgram('server', ['--config', setup.serverConfig], { netns: lab.server });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening', SERVER_START_TIMEOUT_MS);
    const agent = startProgram('agent', ['--config', setup.agentConfig], { netns: lab.device.host });
    programs.push(agent);
    const registered = await server.waitFor((l) => l.msg === 'S202 device registered', REGISTER_WAIT_MS);
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'), REGISTER_WAIT_MS);
    const clientArgs = [
      'connect',
      setup.equipmentId,
      '--server',
      `${ADDR.server}:${SERVER_TLS_PORT}`,
      '--ca',
      setup.caFile,
      '--password-file',
      setup.passwordFile,
      '--service',
      'echo',
      '--stdio',
    ];
    return { lab, setup, server, agent, registered, clientArgs, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
