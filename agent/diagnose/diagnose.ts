/**
 * `peerlink-agent diagnose`: what a field technician needs to know when a device "cannot be
 * reached", checked for real and said in plain words, like `tailscale netcheck`. Each check has
 * a verdict and a suggested fix; later checks are skipped when what they need failed.
 * It runs beside a running agent: probes change nothing at the server (agent/server/probe-responder.ts),
 * and the test port mapping is removed again.
 */
import { lookup } from 'node:dns/promises';
import { createSocket } from 'node:dgram';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { ConfigError, ErrorCodes, isPeerlinkError } from '../common/errors.js';
import { silentLogger } from '../common/logger.js';
import { loadIdentity } from '../device/identity.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { connectToServer } from '../rendezvous/server-tls.js';
import { loadAgentSettings, type AgentSettings } from '../device/settings.js';
import { mapTcpPort } from '../nat/port-mapping.js';
import { formatEndpoint, normalizeAddress, type Endpoint } from '../protocol/address.js';
import { isIP, isIPv6 } from 'node:net';
import { REQUEST_FRESHNESS_MS } from '../protocol/constants.js';
import type { CheckResult, DiagnoseReport } from './report.js';
import { openProbeSocket, type ProbeReply } from '../rendezvous/udp-probe.js';
import { readServerTime } from '../rendezvous/server-time.js';

/** Certificates closer to expiry than this get a warning. */
export const CERT_EXPIRY_WARN_DAYS = 30;
/** A clock this far off the server's is worth fixing, though the agent adopts server time. */
export const CLOCK_WARN_MS = 5_000;
const DAY_MS = 86_400_000;

export interface DiagnoseOptions {
  readonly configFile: string;
  readonly logger?: Logger;
  /** Skip the UPnP/NAT-PMP test (it takes up to 4 s when there is no gateway). */
  readonly skipPortMapping?: boolean;
}

function localAddressTowards(remote: string): Promise<string | null> {
  return new Promise((resolve) => {
    const s = createSocket(isIPv6(remote) ? 'udp6' : 'udp4');
    s.once('error', () => resolve(null));
    s.connect(9, remote, () => {
      const { address } = s.address();
      s.close();
      resolve(address);
    });
  });
}

const skip = (id: string, title: string, why: string): CheckResult => ({ id, title, verdict: 'skip', summary: `not checked: ${why}` });

/** What the checks learn, passed on to the checks that need it. */
interface Found {
  settings: AgentSettings | null;
  identity: DeviceIdentity | null;
  /** The server's address the checks use: its IPv4 one, else its IPv6 one. */
  serverAddr: string | null;
  /** Each family's address of the server (null: none; a literal has one family only). */
  serverByFamily: { 4: string | null; 6: string | null };
  reply: ProbeReply | null;
  mappingReply: ProbeReply | null;
}

/** One step at a time, each skipped when what it needs failed; the report lists them in a fixed order. */
export async function runDiagnose(o: DiagnoseOptions): Promise<DiagnoseReport> {
  const logger = o.logger ?? silentLogger();
  const checks: CheckResult[] = [];
  const found: Found = {
    settings: null,
    identity: null,
    serverAddr: null,
    serverByFamily: { 4: null, 6: null },
    reply: null,
    mappingReply: null,
  };
  found.settings = await checkSettings(o.configFile, checks);
  found.identity = await checkIdentity(found.settings, checks);
  found.serverAddr = await resolveServer(found, checks);
  await checkUdp(found, checks);
  await checkFamilies(found, checks);
  await checkTls(found, checks);
  await checkPublicAddress(found, checks);
  checkNatMapping(found, checks);
  await checkPortMapping(found, o.skipPortMapping === true, logger, checks);
  checkClock(found, checks);

  const order = ['settings', 'identity', 'server-udp', 'families', 'server-tls', 'public-address', 'nat-mapping', 'port-mapping', 'clock'];
  checks.sort((x, y) => order.indexOf(x.id) - order.indexOf(y.id));
  return {
    equipmentId: found.identity?.equipmentId ?? null,
    server: found.settings ? found.settings.server.host : null,
    checks,
    ok: checks.every((c) => c.verdict !== 'fail'),
  };
}

async function checkSettings(configFile: string, checks: CheckResult[]): Promise<AgentSettings | null> {
  try {
    const settings = await loadAgentSettings(configFile);
    checks.push({
      id: 'settings',
      title: 'settings',
      verdict: 'ok',
      summary: `${configFile} is valid (services: ${[...settings.services.keys()].join(', ')})`,
    });
    return settings;
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
    checks.push({
      id: 'settings',
      title: 'settings',
      verdict: 'fail',
      summary: problems.join('; '),
      fix: problems.some((p) => p.includes('ENOENT'))
        ? `the settings file is missing: start from config/agent.example.toml, save it as ${configFile}, edit server.host and identity_file`
        : `edit ${configFile} as each message says (see config/agent.example.toml), then run diagnose again`,
      data: { problems },
    });
    return null;
  }
}

async function checkIdentity(settings: AgentSettings | null, checks: CheckResult[]): Promise<DeviceIdentity | null> {
  if (!settings) {
    checks.push(skip('identity', 'identity', 'the settings are not valid'));
    return null;
  }
  try {
    const identity = await loadIdentity(settings.identityFile);
    checks.push({
      id: 'identity',
      title: 'identity',
      verdict: 'ok',
      summary: `${settings.identityFile}: equipment ${identity.equipmentId}, mode 600, well-formed`,
    });
    return identity;
  } catch (err) {
    const perms = isPeerlinkError(err, ErrorCodes.IDENTITY_PERMISSIONS);
    checks.push({
      id: 'identity',
      title: 'identity',
      verdict: 'fail',
      summary: (err as Error).message.replace(/\n/g, '; '),
      fix: perms
        ? `chmod 600 ${settings.identityFile}`
        : 'the factory identity file is missing or damaged: restore it from the factory records (peerlink-provision batch output); never edit it by hand',
    });
    return null;
  }
}

/** The server's address of each family (the agent registers over each it has, dual-registrar.ts); the IPv4 one first. */
async function resolveServer(found: Found, checks: CheckResult[]): Promise<string | null> {
  const settings = found.settings;
  if (!settings) return null;
  const errors: string[] = [];
  // A literal is its own family only (dns.lookup answers a literal whatever family is asked).
  const literal = isIP(settings.server.host);
  for (const family of literal === 0 ? ([4, 6] as const) : [literal as 4 | 6]) {
    try {
      found.serverByFamily[family] = (await lookup(settings.server.host, { family })).address;
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  const addr = found.serverByFamily[4] ?? found.serverByFamily[6];
  if (addr === null) {
    checks.push({
      id: 'server-udp',
      title: 'server (UDP)',
      verdict: 'fail',
      summary: `cannot resolve ${settings.server.host}: ${errors[0] ?? 'no address'}`,
      fix: "check the device's DNS settings and server.host in the settings",
    });
  }
  return addr;
}

/**
 * Each address family on its own (issue 14): the agent registers over each the server has an
 * address of, and each is a way for a request to wake the device. A family that has an address
 * but no answer costs that path only (the other family still works): a warning, not a failure.
 */
async function checkFamilies(found: Found, checks: CheckResult[]): Promise<void> {
  const { settings, identity, serverByFamily } = found;
  const title = 'IPv4 / IPv6';
  if (!settings || !identity) return void checks.push(skip('families', title, 'no valid settings and identity'));
  if (serverByFamily[4] === null && serverByFamily[6] === null)
    return void checks.push(skip('families', title, 'the server has no address'));
  const parts: string[] = [];
  const data: Record<string, unknown> = {};
  const silent: string[] = [];
  for (const family of [4, 6] as const) {
    const name = `IPv${family}`;
    const addr = serverByFamily[family];
    if (addr === null) {
      parts.push(
        `${name}: the server has no ${name} address (${family === 6 ? 'no AAAA record' : 'no A record'} for ${settings.server.host})`,
      );
      data[`ipv${family}`] = { reachable: false, reason: 'no address' };
      continue;
    }
    const target: Endpoint = { address: addr, port: settings.server.udpPort };
    let reply = addr === found.serverAddr ? found.reply : null;
    if (reply === null) {
      const sock = await openProbeSocket({ equipmentId: identity.equipmentId, registrationKey: identity.registrationKey, family }).catch(
        () => null,
      );
      if (sock) {
        if (found.reply) sock.setOffsetMs(found.reply.offsetMs);
        reply = await sock.probe(target, { tries: 2, timeoutMs: 1000 }).catch(() => null);
        await sock.close();
      }
    }
    if (!reply) {
      silent.push(name);
      parts.push(`${name}: no answer from ${formatEndpoint(target)}`);
      data[`ipv${family}`] = { reachable: false, reason: 'no answer', server: target };
      continue;
    }
    const local = await localAddressTowards(addr);
    const own = local !== null && normalizeAddress(local) === reply.observed.address;
    parts.push(
      `${name}: ${formatEndpoint(target)} answered in ${reply.rttMs} ms, seen as ${formatEndpoint(reply.observed)} (${own ? "this device's own address: no translation" : `behind a NAT: locally ${local ?? '?'}`})`,
    );
    data[`ipv${family}`] = { reachable: true, server: target, observed: reply.observed, local, translated: !own, rttMs: reply.rttMs };
  }
  checks.push({
    id: 'families',
    title,
    verdict: silent.length ? 'warn' : 'ok',
    summary: parts.join('; '),
    ...(silent.length
      ? {
          fix: `${silent.join(' and ')} has an address but no answer: the device lacks a route of that family, or a firewall blocks outgoing UDP ${settings.server.udpPort} over it; the device stays reachable over the other family, which it registers over too`,
        }
      : {}),
    data,
  });
}

/** The server over UDP: its answer gives the public address, the clock and (with the probe port) the NAT's mapping behaviour. */
async function checkUdp(found: Found, checks: CheckResult[]): Promise<void> {
  const { settings, identity, serverAddr } = found;
  if (!settings) return void checks.push(skip('server-udp', 'server (UDP)', 'the settings are not valid'));
  if (!identity) return void checks.push(skip('server-udp', 'server (UDP)', 'no usable identity (registrations are signed with it)'));
  if (!serverAddr) return;
  const sock = await openProbeSocket({
    equipmentId: identity.equipmentId,
    ...(identity.generation ? { generation: identity.generation } : {}),
    registrationKey: identity.registrationKey,
    family: isIPv6(serverAddr) ? 6 : 4,
  });
  try {
    const main: Endpoint = { address: serverAddr, port: settings.server.udpPort };
    found.reply = await sock.probe(main, { tries: 3, timeoutMs: 1000 });
    if (!found.reply) {
      // The server stays silent to a probe far outside its clock window from a new source (P6):
      // read its time over TLS and ask again in it.
      const serverTimeMs = await readServerTime(
        { host: settings.server.host, port: settings.server.tlsPort, serverName: settings.server.serverName, caPem: identity.caCert },
        AbortSignal.timeout(5000),
      ).catch(() => null);
      if (serverTimeMs !== null) {
        sock.setOffsetMs(serverTimeMs - Date.now());
        found.reply = await sock.probe(main, { tries: 2, timeoutMs: 1000 });
      }
    }
    if (found.reply) {
      checks.push({
        id: 'server-udp',
        title: 'server (UDP)',
        verdict: 'ok',
        summary: `${serverAddr}:${main.port} answered in ${found.reply.rttMs} ms`,
        data: { rttMs: found.reply.rttMs },
      });
    } else {
      checks.push({
        id: 'server-udp',
        title: 'server (UDP)',
        verdict: 'fail',
        summary: `no answer from ${serverAddr}:${main.port} after 3 tries`,
        fix:
          `check that the router and any firewall let outgoing UDP to port ${main.port} through, that server.host/udp_port are right, and that the server runs; ` +
          'a server with a different registration master key also stays silent (the device would need its identity from the same factory batch)',
      });
    }
    if (settings.server.probePort && found.reply) {
      found.mappingReply = await sock.probe({ address: serverAddr, port: settings.server.probePort }, { tries: 3, timeoutMs: 1000 });
    }
  } finally {
    await sock.close();
  }
}

async function checkTls({ settings, identity }: Found, checks: CheckResult[]): Promise<void> {
  if (!settings || !identity) return void checks.push(skip('server-tls', 'server (TLS)', 'no valid settings and identity'));
  try {
    const tls = await connectToServer({
      host: settings.server.host,
      port: settings.server.tlsPort,
      serverName: settings.server.serverName,
      caPem: identity.caCert,
      timeoutMs: 5000,
    });
    const cert = tls.getPeerX509Certificate?.() ?? null;
    tls.destroy();
    const daysLeft = cert ? Math.floor((new Date(cert.validTo).getTime() - Date.now()) / DAY_MS) : null;
    const issuer = new X509Certificate(identity.caCert).subject.replace(/^CN=/, '');
    const soon = daysLeft !== null && daysLeft < CERT_EXPIRY_WARN_DAYS;
    checks.push({
      id: 'server-tls',
      title: 'server (TLS)',
      verdict: soon ? 'warn' : 'ok',
      summary: `${settings.server.host}:${settings.server.tlsPort} certificate valid for ${settings.server.serverName}, issued by the bundled CA (${issuer}), expires in ${daysLeft} days`,
      ...(soon
        ? {
            fix: 'the server operator must renew it: peerlink-provision renew-server-cert --ca-dir <station> --dir <server dir>, then restart peerlink-server',
          }
        : {}),
      data: { daysToExpiry: daysLeft },
    });
  } catch (err) {
    const untrusted = isPeerlinkError(err, ErrorCodes.UNTRUSTED_CERTIFICATE);
    checks.push({
      id: 'server-tls',
      title: 'server (TLS)',
      verdict: 'fail',
      summary: (err as Error).message,
      fix: untrusted
        ? `the server's certificate is not from the CA in this device's identity, expired, or not for "${settings.server.serverName}": check server.server_name, or have the operator renew the certificate from the right CA`
        : `check that outgoing TCP to port ${settings.server.tlsPort} is allowed and that the server runs`,
    });
  }
}

async function checkPublicAddress({ reply, serverAddr }: Found, checks: CheckResult[]): Promise<void> {
  if (!reply || !serverAddr) return void checks.push(skip('public-address', 'public address', 'the server did not answer over UDP'));
  const local = await localAddressTowards(serverAddr);
  const natted = local !== reply.observed.address;
  checks.push({
    id: 'public-address',
    title: 'public address',
    verdict: 'ok',
    summary: natted
      ? `${reply.observed.address}:${reply.observed.port} (behind a NAT: this device is ${local} locally)`
      : `${reply.observed.address}:${reply.observed.port} (no NAT: the device has a public address)`,
    data: { public: reply.observed, local, behindNat: natted },
  });
}

function checkNatMapping({ reply, mappingReply, settings }: Found, checks: CheckResult[]): void {
  if (!reply) return void checks.push(skip('nat-mapping', 'NAT mapping', 'the server did not answer over UDP'));
  if (!settings?.server.probePort) {
    return void checks.push({
      id: 'nat-mapping',
      title: 'NAT mapping',
      verdict: 'skip',
      summary: 'not checked: server.probe_port is not set',
      fix: 'to test it, enable [probe] port on the server (e.g. 7401) and set server.probe_port to it',
    });
  }
  if (!mappingReply) {
    return void checks.push({
      id: 'nat-mapping',
      title: 'NAT mapping',
      verdict: 'warn',
      summary: `the server's probe port ${settings.server.probePort} did not answer`,
      fix: "check server.probe_port against the server's [probe] port, and that outgoing UDP to it is allowed",
    });
  }
  const same = mappingReply.observed.port === reply.observed.port && mappingReply.observed.address === reply.observed.address;
  checks.push(
    same
      ? {
          id: 'nat-mapping',
          title: 'NAT mapping',
          verdict: 'ok',
          summary: `endpoint-independent: the same external port ${reply.observed.port} towards two server ports, so the server's notifications reach the device`,
          data: { behaviour: 'endpoint-independent', ports: [reply.observed.port, mappingReply.observed.port] },
        }
      : {
          id: 'nat-mapping',
          title: 'NAT mapping',
          verdict: 'warn',
          summary: `symmetric (address-and-port-dependent): external port ${reply.observed.port} towards port ${settings.server.udpPort}, ${mappingReply.observed.port} towards port ${settings.server.probePort}`,
          fix: 'notifications still work through the registration\'s own mapping, but peers cannot reuse it; enable UPnP/NAT-PMP on the router, or set its NAT to "endpoint-independent"/"full cone" if it offers that; connections otherwise use the relay',
          data: { behaviour: 'symmetric', ports: [reply.observed.port, mappingReply.observed.port] },
        },
  );
}

async function checkPortMapping({ settings, reply }: Found, skipIt: boolean, logger: Logger, checks: CheckResult[]): Promise<void> {
  if (skipIt) return void checks.push(skip('port-mapping', 'UPnP/NAT-PMP', 'skipped on request'));
  if (!settings) return void checks.push(skip('port-mapping', 'UPnP/NAT-PMP', 'fix the settings first'));
  const probePort = 20_000 + Math.floor(Math.random() * 20_000);
  try {
    const m = await mapTcpPort({ port: probePort, mode: 'auto', logger });
    if (!m) {
      return void checks.push({
        id: 'port-mapping',
        title: 'UPnP/NAT-PMP',
        verdict: 'warn',
        summary: 'no UPnP IGD or NAT-PMP gateway answered on this network',
        fix: 'optional: enable UPnP or NAT-PMP on the router; the device stays reachable without it (notifications and the relay)',
        data: { mapped: false },
      });
    }
    await m.release().catch(() => undefined);
    const mismatch = reply && m.externalHost !== reply.observed.address;
    checks.push({
      id: 'port-mapping',
      title: 'UPnP/NAT-PMP',
      verdict: mismatch ? 'warn' : 'ok',
      summary: `gateway found (${m.via}); external address ${m.externalHost}; a test mapping of TCP port ${m.externalPort} was made and removed`,
      ...(mismatch
        ? {
            fix: `the gateway's external address ${m.externalHost} is not the address the server sees (${reply!.observed.address}): there is a second NAT (carrier-grade NAT) in front of it, so mappings on this router cannot help`,
          }
        : {}),
      data: { via: m.via, externalAddress: m.externalHost, mapped: true },
    });
  } catch (err) {
    checks.push({
      id: 'port-mapping',
      title: 'UPnP/NAT-PMP',
      verdict: 'warn',
      summary: `port mapping test failed: ${(err as Error).message}`,
      data: { mapped: false },
    });
  }
}

function checkClock({ reply }: Found, checks: CheckResult[]): void {
  if (!reply) return void checks.push(skip('clock', 'clock', 'the server did not answer over UDP'));
  const off = reply.offsetMs;
  const abs = Math.abs(off);
  const words = `${abs < 1000 ? `${abs} ms` : `${(abs / 1000).toFixed(1)} s`} ${off >= 0 ? 'behind' : 'ahead of'} the server`;
  checks.push(
    abs < CLOCK_WARN_MS
      ? { id: 'clock', title: 'clock', verdict: 'ok', summary: `this device's clock is ${words}`, data: { offsetMs: off } }
      : {
          id: 'clock',
          title: 'clock',
          verdict: 'warn',
          summary: `this device's clock is ${words}${abs >= REQUEST_FRESHNESS_MS ? ' (more than the 30 s freshness window; the agent adopts the server time, but other software on the device may suffer)' : ''}`,
          fix: 'enable time synchronisation on the device (e.g. timedatectl set-ntp true)',
          data: { offsetMs: off },
        },
  );
}
