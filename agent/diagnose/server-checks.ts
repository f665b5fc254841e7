/** The checks of the way to the server: its addresses, UDP and TLS over each family, the clock. */
import { lookup } from 'node:dns/promises';
import { createSocket } from 'node:dgram';
import { X509Certificate } from 'node:crypto';
import { isIP, isIPv6 } from 'node:net';
import { ErrorCodes, isPeerlinkError } from '../common/errors.js';
import { connectToServer } from '../rendezvous/server-tls.js';
import { formatEndpoint, normalizeAddress, type Endpoint } from '../protocol/address.js';
import { REQUEST_FRESHNESS_MS } from '../protocol/constants.js';
import type { CheckResult } from './report.js';
import { openProbeSocket } from '../rendezvous/udp-probe.js';
import { readServerTime } from '../rendezvous/server-time.js';
import { skip, type Found } from './found.js';

/** Certificates closer to expiry than this get a warning. */
export const CERT_EXPIRY_WARN_DAYS = 30;
/** A clock this far off the server's is worth fixing, though the agent adopts server time. */
export const CLOCK_WARN_MS = 5_000;
const DAY_MS = 86_400_000;

export function localAddressTowards(remote: string): Promise<string | null> {
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

/** The server's address of each family (the agent registers over each it has, dual-registrar.ts); the IPv4 one first. */
export async function resolveServer(found: Found, checks: CheckResult[]): Promise<string | null> {
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

/** The server over UDP: its answer gives the public address, the clock and (with the probe port) the NAT's mapping behaviour. */
export async function checkUdp(found: Found, checks: CheckResult[]): Promise<void> {
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

/**
 * Each address family on its own (issue 14): the agent registers over each the server has an
 * address of, and each is a way for a request to wake the device. A family that has an address
 * but no answer costs that path only (the other family still works): a warning, not a failure.
 */
export async function checkFamilies(found: Found, checks: CheckResult[]): Promise<void> {
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

export async function checkTls({ settings, identity }: Found, checks: CheckResult[]): Promise<void> {
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

export function checkClock({ reply }: Found, checks: CheckResult[]): void {
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
