/**
 * Ask the home router to forward a public TCP port to us: UPnP IGD (v1 and v2) or NAT-PMP.
 * Our own small clients (`upnp-igd.ts`, `nat-pmp.ts`, `ssdp.ts`) over Node's dgram and fetch: the
 * npm packages measured here fail one version or the other (docs/dependencies.md). The external
 * address is learnt, a one-hour lease is asked for; renew() asks again (a gateway that restarted
 * and forgot the mapping gets it back; one that kept it extends the lease); release() removes it.
 */
import { createSocket } from 'node:dgram';
import type { Logger } from 'pino';
import { defaultGateway4 } from './default-gateway.js';
import { natPmpExternalAddress, natPmpMapTcp } from './nat-pmp.js';
import { searchGateways } from './ssdp.js';
import { addPortMapping, deletePortMapping, describeGateway, externalAddress, UpnpError, type IgdService } from './upnp-igd.js';

export const MAPPING_MODES = ['off', 'auto', 'upnp', 'natpmp'] as const;
export type MappingMode = (typeof MAPPING_MODES)[number];

/** UPnP discovery (SSDP) answers in milliseconds on a LAN; a gateway that has not by then is absent. */
export const UPNP_DISCOVERY_MS = 2_000;
export const NATPMP_TIMEOUT_MS = 2_000;
/** Removing a mapping on exit must not hold the exit up (systemd stop, Ctrl-C). */
export const RELEASE_TIMEOUT_MS = 3_000;
/** A UPnP gateway that was found but does not answer a request (seen: miniupnpd behind a CGN). */
export const UPNP_MAP_TIMEOUT_MS = 3_000;
/** The lease asked for; renew() runs well inside it. */
export const MAPPING_LEASE_MS = 3_600_000;
const DESCRIPTION = 'peerlink';
/** UPnP error 718: the external port is taken (by another host's mapping); try others. */
const UPNP_CONFLICT = 718;
const CONFLICT_RETRIES = 3;

export interface PortMapping {
  readonly externalHost: string;
  readonly externalPort: number;
  readonly via: 'upnp' | 'natpmp';
  /** Ask the gateway again for the same mapping (re-creates it after a gateway restart). */
  renew(signal?: AbortSignal): Promise<void>;
  release(): Promise<void>;
}

/** The local address the kernel would use towards `remote` (the address the router should forward to). */
function localAddressTowards(remote: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.connect(9, remote, () => {
      const { address } = s.address();
      s.close();
      resolve(address);
    });
  });
}

const within = (ms: number, signal?: AbortSignal): AbortSignal => AbortSignal.any([AbortSignal.timeout(ms), ...(signal ? [signal] : [])]);

async function mapWithUpnp(service: IgdService, port: number, logger: Logger, signal?: AbortSignal): Promise<PortMapping> {
  const host = service.controlUrl.hostname;
  const local = await localAddressTowards(host);
  const externalHost = await externalAddress(service, within(UPNP_MAP_TIMEOUT_MS, signal));
  const leaseS = Math.round(MAPPING_LEASE_MS / 1000);
  let externalPort = port;
  for (let attempt = 0; ; attempt++) {
    try {
      await addPortMapping(service, { externalPort, internalPort: port, internalClient: local, description: DESCRIPTION, leaseS }, within(UPNP_MAP_TIMEOUT_MS, signal));
      break;
    } catch (err) {
      if (!(err instanceof UpnpError && err.upnpCode === UPNP_CONFLICT) || attempt >= CONFLICT_RETRIES) throw err;
      externalPort = 1024 + Math.floor(Math.random() * (65536 - 1024));
    }
  }
  logger.info({ via: 'upnp', gateway: host, igd: service.serviceType, external: `${externalHost}:${externalPort}` }, 'port mapped');
  const mapped = { internalPort: port, internalClient: local, description: DESCRIPTION, leaseS, externalPort };
  return {
    externalHost,
    externalPort,
    via: 'upnp',
    renew: async (s) => void (await addPortMapping(service, mapped, within(UPNP_MAP_TIMEOUT_MS, s))),
    release: async () => void (await deletePortMapping(service, externalPort, AbortSignal.timeout(RELEASE_TIMEOUT_MS))),
  };
}

async function mapWithNatPmp(gateway: string, port: number, logger: Logger, signal?: AbortSignal): Promise<PortMapping> {
  const lifetimeS = Math.round(MAPPING_LEASE_MS / 1000);
  const externalHost = await natPmpExternalAddress(gateway, within(NATPMP_TIMEOUT_MS, signal));
  const m = await natPmpMapTcp(gateway, { internalPort: port, externalPort: port, lifetimeS }, within(NATPMP_TIMEOUT_MS, signal));
  logger.info({ via: 'natpmp', gateway, external: `${externalHost}:${m.externalPort}` }, 'port mapped');
  return {
    externalHost,
    externalPort: m.externalPort,
    via: 'natpmp',
    renew: async (s) => void (await natPmpMapTcp(gateway, { internalPort: port, externalPort: m.externalPort, lifetimeS }, within(NATPMP_TIMEOUT_MS, s))),
    // RFC 6886 section 3.4: lifetime 0 and external port 0 delete the mapping.
    release: async () => void (await natPmpMapTcp(gateway, { internalPort: port, externalPort: 0, lifetimeS: 0 }, AbortSignal.timeout(RELEASE_TIMEOUT_MS))),
  };
}

export async function mapTcpPort(o: { port: number; mode: Exclude<MappingMode, 'off'>; logger: Logger; signal?: AbortSignal }): Promise<PortMapping | null> {
  // Asked once: UPnP answers are accepted from it only (ssdp.ts acceptLocation), NAT-PMP talks to it.
  const gw = await defaultGateway4();
  if (o.mode === 'auto' || o.mode === 'upnp') {
    const found: URL[] = [];
    let ignoredLogged = false;
    let wake: (() => void) | null = null;
    let searching = true;
    const stopSearch = new AbortController();
    const search = searchGateways({
      timeoutMs: UPNP_DISCOVERY_MS,
      gateway: gw,
      // Once per search: any LAN host can send answers, as many as it likes.
      onIgnored: (location, from) => {
        if (ignoredLogged) return;
        ignoredLogged = true;
        o.logger.warn({ location: location.href, from, gateway: gw }, 'ignored a UPnP answer not from our default gateway');
      },
      signal: AbortSignal.any([stopSearch.signal, ...(o.signal ? [o.signal] : [])]),
      onAnswer: (location) => {
        found.push(location);
        wake?.();
      },
    }).finally(() => {
      searching = false;
      wake?.();
    });
    // Try each gateway as it answers; stop at the first mapping.
    try {
      while (found.length > 0 || searching) {
        if (found.length === 0) {
          await new Promise<void>((r) => (wake = r));
          wake = null;
          continue;
        }
        const location = found.shift()!;
        try {
          const service = await describeGateway(location, within(UPNP_MAP_TIMEOUT_MS, o.signal));
          return await mapWithUpnp(service, o.port, o.logger, o.signal);
        } catch (err) {
          if (o.signal?.aborted) throw err;
          o.logger.info({ gateway: location.host, err: (err as Error).message }, 'UPnP gateway refused the mapping');
        }
      }
    } finally {
      stopSearch.abort();
      await search.catch(() => undefined);
    }
  }
  if (o.mode === 'auto' || o.mode === 'natpmp') {
    if (gw) {
      try {
        return await mapWithNatPmp(gw, o.port, o.logger, o.signal);
      } catch (err) {
        if (o.signal?.aborted) throw err;
        o.logger.info({ gateway: gw, err: (err as Error).message }, 'NAT-PMP gateway did not map the port');
      }
    }
  }
  return null;
}
