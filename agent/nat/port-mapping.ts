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
import {
  addPortMapping,
  deletePortMapping,
  describeGateway,
  externalAddress,
  getSpecificPortMapping,
  UpnpError,
  type IgdService,
} from './upnp-igd.js';
import type { MappingRecord } from './mapping-record.js';

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
/** The mapping's description on the gateway unless the caller names one (the agent adds its equipment ID). */
export const DEFAULT_MAPPING_DESCRIPTION = 'peerlink';
/** UPnP error 718: the external port is taken (by another host's mapping); try others. */
const UPNP_CONFLICT = 718;
const CONFLICT_RETRIES = 3;

export interface PortMapping {
  readonly externalHost: string;
  readonly externalPort: number;
  readonly via: 'upnp' | 'natpmp';
  /** What to keep on disk so that a run after a crash can replace this mapping (mapping-record.ts). */
  readonly record: MappingRecord;
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

interface MapRequest {
  readonly port: number;
  readonly logger: Logger;
  readonly description: string;
  readonly previous: MappingRecord | null;
  readonly signal: AbortSignal | undefined;
}

/**
 * A previous run's mapping on this gateway (it crashed and could not remove it): removed when it is
 * still ours (our address, our description) and forwards to another internal port; its external
 * port is the one to ask for again. Best effort: a failure here leaves only the old lease to expire.
 */
async function replaceOldUpnp(service: IgdService, local: string, r: MapRequest): Promise<number> {
  const old = r.previous;
  if (!old || old.via !== 'upnp' || old.gateway !== service.controlUrl.hostname) return r.port;
  try {
    const entry = await getSpecificPortMapping(service, old.externalPort, within(UPNP_MAP_TIMEOUT_MS, r.signal));
    if (entry && entry.internalClient === local && entry.description === r.description && entry.internalPort !== r.port) {
      await deletePortMapping(service, old.externalPort, within(UPNP_MAP_TIMEOUT_MS, r.signal));
      r.logger.info(
        { via: 'upnp', external: old.externalPort, internalPort: entry.internalPort },
        'removed the port mapping a previous run left',
      );
    }
  } catch (err) {
    if (r.signal?.aborted) throw err;
    r.logger.info(
      { via: 'upnp', external: old.externalPort, err: (err as Error).message },
      'could not remove the port mapping a previous run left',
    );
  }
  return old.externalPort;
}

async function mapWithUpnp(service: IgdService, r: MapRequest): Promise<PortMapping> {
  const { port, logger, signal } = r;
  const host = service.controlUrl.hostname;
  const local = await localAddressTowards(host);
  const externalHost = await externalAddress(service, within(UPNP_MAP_TIMEOUT_MS, signal));
  const leaseS = Math.round(MAPPING_LEASE_MS / 1000);
  let externalPort = await replaceOldUpnp(service, local, r);
  for (let attempt = 0; ; attempt++) {
    try {
      await addPortMapping(
        service,
        { externalPort, internalPort: port, internalClient: local, description: r.description, leaseS },
        within(UPNP_MAP_TIMEOUT_MS, signal),
      );
      break;
    } catch (err) {
      if (!(err instanceof UpnpError && err.upnpCode === UPNP_CONFLICT) || attempt >= CONFLICT_RETRIES) throw err;
      externalPort = 1024 + Math.floor(Math.random() * (65536 - 1024));
    }
  }
  logger.info({ via: 'upnp', gateway: host, igd: service.serviceType, external: `${externalHost}:${externalPort}` }, 'port mapped');
  const mapped = { internalPort: port, internalClient: local, description: r.description, leaseS, externalPort };
  return {
    externalHost,
    externalPort,
    via: 'upnp',
    record: { via: 'upnp', gateway: host, externalPort, internalPort: port, internalClient: local },
    renew: async (s) => void (await addPortMapping(service, mapped, within(UPNP_MAP_TIMEOUT_MS, s))),
    release: async () => void (await deletePortMapping(service, externalPort, AbortSignal.timeout(RELEASE_TIMEOUT_MS))),
  };
}

async function mapWithNatPmp(gateway: string, r: MapRequest): Promise<PortMapping> {
  const { port, logger, signal } = r;
  const lifetimeS = Math.round(MAPPING_LEASE_MS / 1000);
  const externalHost = await natPmpExternalAddress(gateway, within(NATPMP_TIMEOUT_MS, signal));
  // A previous run's mapping (it crashed): NAT-PMP keys mappings by our address and internal port,
  // so deleting that one removes only ours (RFC 6886 section 3.4); then ask for its external port.
  const old = r.previous?.via === 'natpmp' && r.previous.gateway === gateway ? r.previous : null;
  if (old && old.internalPort !== port) {
    try {
      await natPmpMapTcp(gateway, { internalPort: old.internalPort, externalPort: 0, lifetimeS: 0 }, within(NATPMP_TIMEOUT_MS, signal));
      logger.info(
        { via: 'natpmp', external: old.externalPort, internalPort: old.internalPort },
        'removed the port mapping a previous run left',
      );
    } catch (err) {
      if (signal?.aborted) throw err;
      logger.info(
        { via: 'natpmp', external: old.externalPort, err: (err as Error).message },
        'could not remove the port mapping a previous run left',
      );
    }
  }
  const m = await natPmpMapTcp(
    gateway,
    { internalPort: port, externalPort: old?.externalPort ?? port, lifetimeS },
    within(NATPMP_TIMEOUT_MS, signal),
  );
  logger.info({ via: 'natpmp', gateway, external: `${externalHost}:${m.externalPort}` }, 'port mapped');
  return {
    externalHost,
    externalPort: m.externalPort,
    via: 'natpmp',
    record: {
      via: 'natpmp',
      gateway,
      externalPort: m.externalPort,
      internalPort: port,
      internalClient: await localAddressTowards(gateway),
    },
    renew: async (s) =>
      void (await natPmpMapTcp(gateway, { internalPort: port, externalPort: m.externalPort, lifetimeS }, within(NATPMP_TIMEOUT_MS, s))),
    // RFC 6886 section 3.4: lifetime 0 and external port 0 delete the mapping.
    release: async () =>
      void (await natPmpMapTcp(gateway, { internalPort: port, externalPort: 0, lifetimeS: 0 }, AbortSignal.timeout(RELEASE_TIMEOUT_MS))),
  };
}

export async function mapTcpPort(o: {
  port: number;
  mode: Exclude<MappingMode, 'off'>;
  logger: Logger;
  signal?: AbortSignal;
  /** Shown on the gateway (UPnP); the agent makes it its own so that it can tell its mappings apart. */
  description?: string;
  /** A mapping a previous run left (mapping-record.ts): replaced, not added to. */
  previous?: MappingRecord | null;
}): Promise<PortMapping | null> {
  const req: MapRequest = {
    port: o.port,
    logger: o.logger,
    description: o.description ?? DEFAULT_MAPPING_DESCRIPTION,
    previous: o.previous ?? null,
    signal: o.signal,
  };
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
          return await mapWithUpnp(service, req);
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
        return await mapWithNatPmp(gw, req);
      } catch (err) {
        if (o.signal?.aborted) throw err;
        o.logger.info({ gateway: gw, err: (err as Error).message }, 'NAT-PMP gateway did not map the port');
      }
    }
  }
  return null;
}
