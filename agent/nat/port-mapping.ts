/**
 * Ask the home router to forward a public TCP port to us: UPnP IGD (v1 and v2) or NAT-PMP,
 * through @achingbrain/nat-port-mapper (nat-upnp fails against IGD v2; see the README's
 * Dependencies). renew() asks again (a gateway that restarted and forgot the mapping gets it back;
 * one that kept it extends the lease); release() removes the mapping.
 * Loaded lazily: a client or agent that never maps a port never loads it.
 */
import { createSocket } from 'node:dgram';
import type { Logger } from 'pino';
import { defaultGateway4 } from './default-gateway.js';

export const MAPPING_MODES = ['off', 'auto', 'upnp', 'natpmp'] as const;
export type MappingMode = (typeof MAPPING_MODES)[number];

/** UPnP discovery (SSDP) answers in milliseconds on a LAN; a gateway that has not by then is absent. */
export const UPNP_DISCOVERY_MS = 2_000;
export const NATPMP_TIMEOUT_MS = 2_000;
/** The lease asked for (the library's UPnP minimum is one hour); renew() runs well inside it. */
export const MAPPING_LEASE_MS = 3_600_000;

export interface PortMapping {
  readonly externalHost: string;
  readonly externalPort: number;
  readonly via: 'upnp' | 'natpmp';
  /** Ask the gateway again for the same mapping (re-creates it after a gateway restart). */
  renew(signal?: AbortSignal): Promise<void>;
  release(): Promise<void>;
}

/**
 * The library keeps every mapping it made per local port in an array, and would grow it on each
 * renewal: keep only the latest (a long-running agent renews for years).
 */
function keepLatestMapping(gateway: unknown, port: number): void {
  const mappings = (gateway as { mappings?: Map<number, unknown[]> }).mappings;
  const list = mappings?.get(port);
  if (Array.isArray(list) && list.length > 1) mappings!.set(port, list.slice(-1));
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

export async function mapTcpPort(o: { port: number; mode: Exclude<MappingMode, 'off'>; logger: Logger; signal?: AbortSignal }): Promise<PortMapping | null> {
  const { upnpNat, pmpNat } = await import('@achingbrain/nat-port-mapper');
  // Our own renewal (renew()) instead of the library's timers, which would pile up on each renewal.
  const options = { description: 'peerlink', ttl: MAPPING_LEASE_MS, autoRefresh: false };
  if (o.mode === 'auto' || o.mode === 'upnp') {
    const signal = AbortSignal.any([AbortSignal.timeout(UPNP_DISCOVERY_MS), ...(o.signal ? [o.signal] : [])]);
    try {
      for await (const gateway of upnpNat(options).findGateways({ signal })) {
        if (gateway.family !== 'IPv4') continue;
        try {
          const local = await localAddressTowards(gateway.host);
          const m = await gateway.map(o.port, local, { protocol: 'TCP', externalPort: o.port });
          o.logger.info({ via: 'upnp', gateway: gateway.host, external: `${m.externalHost}:${m.externalPort}` }, 'port mapped');
          const renew = async (signal?: AbortSignal): Promise<void> => {
            await gateway.map(o.port, local, { protocol: 'TCP', externalPort: m.externalPort, ...(signal ? { signal } : {}) });
            keepLatestMapping(gateway, o.port);
          };
          return { externalHost: m.externalHost, externalPort: m.externalPort, via: 'upnp', renew, release: () => gateway.stop() };
        } catch (err) {
          o.logger.info({ gateway: gateway.host, err: (err as Error).message }, 'UPnP gateway refused the mapping');
          await gateway.stop().catch(() => undefined);
        }
      }
    } catch (err) {
      if (o.signal?.aborted) throw err;
      // Discovery timed out: no UPnP gateway answered.
    }
  }
  if (o.mode === 'auto' || o.mode === 'natpmp') {
    const gw = await defaultGateway4();
    if (gw) {
      const gateway = pmpNat(gw, options);
      try {
        const local = await localAddressTowards(gw);
        const m = await gateway.map(o.port, local, { protocol: 'TCP', externalPort: o.port, signal: AbortSignal.timeout(NATPMP_TIMEOUT_MS) });
        o.logger.info({ via: 'natpmp', gateway: gw, external: `${m.externalHost}:${m.externalPort}` }, 'port mapped');
        const renew = async (signal?: AbortSignal): Promise<void> => {
          await gateway.map(o.port, local, { protocol: 'TCP', externalPort: m.externalPort, signal: signal ?? AbortSignal.timeout(NATPMP_TIMEOUT_MS) });
        };
        return { externalHost: m.externalHost, externalPort: m.externalPort, via: 'natpmp', renew, release: () => gateway.stop() };
      } catch (err) {
        o.logger.info({ gateway: gw, err: (err as Error).message }, 'NAT-PMP gateway did not map the port');
        await gateway.stop().catch(() => undefined);
      }
    }
  }
  return null;
}
