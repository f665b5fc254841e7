/**
 * A throwaway PKI, server settings, device identity and agent settings in one directory, for
 * the loopback demo and the integration tests. Nothing here is for production: real devices
 * get their identity from the factory (scripts/provision.ts).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { createRegistrationMasterKey, formatMasterKey } from '../../agent/pki/master-key.js';
import { createDeviceIdentity, writeDeviceIdentity } from '../../agent/pki/device.js';
import { writeFileAtomic } from '../../agent/common/files.js';
import { freePort } from './free-port.js';

export interface LoopbackSetupOptions {
  readonly dir: string;
  readonly equipmentId?: string;
  readonly password?: string;
  /** service name -> "host:port" */
  readonly services: Readonly<Record<string, string>>;
  /** Extra lines appended to the agent's settings file (TOML; start with a [table] header). */
  readonly agentExtra?: string;
  /** The agent's [reverse] port_mapping; default "off" (a loopback demo has no gateway to ask). */
  readonly portMapping?: 'off' | 'auto' | 'upnp' | 'natpmp';
  /** Extra lines in the agent's [dial] table, e.g. "direct_timeout_ms = 2000". */
  readonly dialExtra?: string;
  /** Extra lines in the agent's [reverse] table, e.g. "mapping_renew_ms = 2000". */
  readonly reverseExtra?: string;
  /** Only the patent's path and the relay: no hole punch, no reverse port (tests that force the relay). */
  readonly directDialOnly?: boolean;
  /** Extra lines appended to the server's settings file (TOML). */
  readonly serverExtra?: string;
  readonly registerIntervalMs?: number;
  /** Where the server listens and the agent finds it; default 127.0.0.1 (the NAT lab uses a WAN address). */
  readonly serverAddress?: string;
  /** The server's bind host (default: `serverAddress` on loopback, else 0.0.0.0; "::" = dual stack). */
  readonly listenHost?: string;
  /** The server host the agent's settings name (default `serverAddress`; the IPv6 lab: a name of both families). */
  readonly agentServerHost?: string;
  /** Fixed ports instead of free loopback ports (the NAT lab's server has its own namespace). */
  readonly ports?: { readonly udp: number; readonly tls: number };
  /** Both programs' log_level (default info); benches run at warn, to measure the work and not pino. */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

export interface LoopbackSetup {
  readonly dir: string;
  readonly equipmentId: string;
  readonly password: string;
  readonly passwordFile: string;
  readonly caFile: string;
  readonly caPem: string;
  /** The throwaway CA's key (specs that renew the server certificate need it). */
  readonly caKeyPem: string;
  readonly serverConfig: string;
  readonly agentConfig: string;
  readonly identityFile: string;
  readonly udpPort: number;
  readonly tlsPort: number;
  readonly masterKey: Buffer;
  readonly certPem: string;
  readonly keyPem: string;
}

export async function createLoopbackSetup(o: LoopbackSetupOptions): Promise<LoopbackSetup> {
  const dir = o.dir;
  await mkdir(dir, { recursive: true });
  const equipmentId = o.equipmentId ?? 'DEMO-TV-0001';
  const ca = createCa({ commonName: 'peerlink throwaway CA' });
  const serverAddress = o.serverAddress ?? '127.0.0.1';
  // IPv6 loopback too (issue 14): a demo or test on one machine over ::1.
  const loopback = serverAddress === '127.0.0.1' || serverAddress === '::1';
  const server = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', serverAddress] });
  const masterKey = createRegistrationMasterKey();
  const device = await createDeviceIdentity({
    equipmentId,
    masterKey,
    caCertPem: ca.certPem,
    ...(o.password ? { password: o.password } : {}),
  });
  const [udpPort, tlsPort] = o.ports ? [o.ports.udp, o.ports.tls] : [await freePort(), await freePort()];
  const caFile = join(dir, 'ca.pem');
  const identityFile = join(dir, 'identity.toml');
  const passwordFile = join(dir, 'password.txt');
  await writeFile(caFile, ca.certPem, { mode: 0o644 });
  await writeFileAtomic(join(dir, 'server.pem'), server.certPem, 0o644);
  await writeFileAtomic(join(dir, 'server.key'), server.keyPem);
  await writeFileAtomic(join(dir, 'registration-master.key'), formatMasterKey(masterKey));
  await writeDeviceIdentity(identityFile, device.identity);
  await writeFileAtomic(passwordFile, `${device.password}\n`);
  const serverConfig = join(dir, 'server.toml');
  await writeFile(
    serverConfig,
    [
      `log_level = "${o.logLevel ?? 'info'}"`,
      'registration_master_key_file = "registration-master.key"',
      '[udp]',
      `host = "${o.listenHost ?? (loopback ? serverAddress : '0.0.0.0')}"`,
      `port = ${udpPort}`,
      '[tls]',
      `host = "${o.listenHost ?? (loopback ? serverAddress : '0.0.0.0')}"`,
      `port = ${tlsPort}`,
      'cert_file = "server.pem"',
      'key_file = "server.key"',
      o.serverExtra ?? '',
      '',
    ].join('\n'),
  );
  const agentConfig = join(dir, 'agent.toml');
  await writeFile(
    agentConfig,
    [
      'identity_file = "identity.toml"',
      'state_dir = "state"',
      `log_level = "${o.logLevel ?? 'info'}"`,
      '[server]',
      `host = "${o.agentServerHost ?? serverAddress}"`,
      `udp_port = ${udpPort}`,
      `tls_port = ${tlsPort}`,
      'server_name = "localhost"',
      '[registration]',
      `interval_ms = ${o.registerIntervalMs ?? 15000}`,
      // Tests and the demo register on a fixed beat (their timings assume it); devices default to adaptive.
      o.agentExtra?.includes('[keepalive]') ? '' : '[keepalive]\nmode = "fixed"',
      '[dial]',
      loopback ? '# loopback only because this is a demo/test on one machine' : '',
      `allow_loopback = ${loopback}`,
      o.dialExtra ?? '',
      o.directDialOnly ? 'hole_punch = false' : '',
      '[reverse]',
      o.directDialOnly ? 'enabled = false' : '',
      `port_mapping = "${o.portMapping ?? 'off'}"`,
      o.reverseExtra ?? '',
      '[services]',
      ...Object.entries(o.services).map(([k, v]) => `${k} = "${v}"`),
      o.agentExtra ?? '',
      '',
    ].join('\n'),
  );
  return {
    dir,
    equipmentId,
    password: device.password,
    passwordFile,
    caFile,
    caPem: ca.certPem,
    caKeyPem: ca.keyPem,
    serverConfig,
    agentConfig,
    identityFile,
    udpPort,
    tlsPort,
    masterKey,
    certPem: server.certPem,
    keyPem: server.keyPem,
  };
}

/** `peerlink connect` to this setup's device and service over loopback: the flags every caller repeats. */
export function connectArgs(setup: Pick<LoopbackSetup, 'equipmentId' | 'tlsPort' | 'caFile' | 'passwordFile'>, service: string): string[] {
  return [
    'connect',
    setup.equipmentId,
    '--server',
    `127.0.0.1:${setup.tlsPort}`,
    '--server-name',
    'localhost',
    '--ca',
    setup.caFile,
    '--password-file',
    setup.passwordFile,
    '--service',
    service,
  ];
}
