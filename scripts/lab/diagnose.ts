/**
 * `peerlink-agent diagnose --json` run for real on a device behind a lab router (a NAT kind,
 * optionally a UPnP/NAT-PMP gateway), against the real server with its probe port.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DiagnoseReport } from '../../agent/diagnose/report.js';
import { createLoopbackSetup } from '../lib/loopback-setup.js';
import { PROGRAMS, startProgram, type Program } from '../lib/program.js';
import { inNs } from './exec.js';
import type { NatKind } from './nat.js';
import { ADDR, createLab, type Lab, type Stack } from './topology.js';
import { LAB_SERVER_NAME, labHostsFile } from './cell.js';
import { startGateway, type Gateway, type UpnpKind } from './upnp.js';

export const LAB_UDP_PORT = 7400;
export const LAB_TLS_PORT = 7443;
export const LAB_PROBE_PORT = 7401;

export interface DiagnoseRun {
  readonly report: DiagnoseReport;
  readonly text: string;
  readonly devicePublicAddress: string;
}

/** `deviceStack` (issue 14): an IPv6 lab, the server dual stack and named by LAB_SERVER_NAME (A and AAAA). */
export async function diagnoseScenario(o: { deviceNat: NatKind; upnp: UpnpKind; deviceStack?: Stack }): Promise<DiagnoseRun> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-lab-diagnose-'));
  let lab: Lab | null = null;
  let server: Program | null = null;
  let gateway: Gateway | null = null;
  let removeHosts: (() => Promise<void>) | null = null;
  const ipv6 = o.deviceStack !== undefined;
  try {
    lab = await createLab({
      client: { nat: 'none' },
      device: { nat: o.deviceNat, ...(ipv6 ? { stack: o.deviceStack } : {}) },
      ...(ipv6 ? { ipv6: true } : {}),
    });
    if (ipv6) removeHosts = await labHostsFile([lab.device.host]);
    const setup = await createLoopbackSetup({
      dir,
      serverAddress: ADDR.server,
      ports: { udp: LAB_UDP_PORT, tls: LAB_TLS_PORT },
      services: { http: '127.0.0.1:80' },
      serverExtra: `[probe]\nport = ${LAB_PROBE_PORT}`,
      ...(ipv6 ? { listenHost: '::', agentServerHost: LAB_SERVER_NAME } : {}),
    });
    const text = await readFile(setup.agentConfig, 'utf8');
    await writeFile(
      setup.agentConfig,
      text.replace('server_name = "localhost"', `server_name = "localhost"\nprobe_port = ${LAB_PROBE_PORT}`),
    );
    server = startProgram('server', ['--config', setup.serverConfig], { netns: lab.server });
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    if (o.upnp !== 'none' && lab.device.router)
      gateway = await startGateway({ router: lab.device.router, kind: o.upnp, dir, lanCidr: ADDR.lanCidr });
    const json = await inNs(lab.device.host, [process.execPath, PROGRAMS.agent, 'diagnose', '--json', '--config', setup.agentConfig]).catch(
      (err: { stderr?: string; cause?: { stdout?: string } }) => {
        // Exit 1 (a failed check) still prints the report.
        const out = err.cause?.stdout;
        if (typeof out === 'string' && out.startsWith('{')) return out;
        throw err;
      },
    );
    const report = JSON.parse(json) as DiagnoseReport;
    const { formatReport } = await import('../../agent/diagnose/report.js');
    return { report, text: formatReport(report), devicePublicAddress: lab.device.publicAddress };
  } finally {
    await gateway?.stop();
    await server?.stop(2000);
    await lab?.destroy();
    await removeHosts?.();
    await rm(dir, { recursive: true, force: true });
  }
}
