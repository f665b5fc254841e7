/** The checks of this home's router: the public address, how it maps ports, UPnP / NAT-PMP. */
import type { Logger } from 'pino';
import { mapTcpPort } from '../nat/port-mapping.js';
import type { CheckResult } from './report.js';
import { skip, type Found } from './found.js';
import { localAddressTowards } from './server-checks.js';

export async function checkPublicAddress({ reply, serverAddr }: Found, checks: CheckResult[]): Promise<void> {
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

export function checkNatMapping({ reply, mappingReply, settings }: Found, checks: CheckResult[]): void {
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

export async function checkPortMapping({ settings, reply }: Found, skipIt: boolean, logger: Logger, checks: CheckResult[]): Promise<void> {
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
