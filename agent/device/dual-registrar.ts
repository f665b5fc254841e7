/**
 * Registration over both address families (issue 14). A device with IPv4 and IPv6 registers over
 * each (one registrar, one socket, one mapping at the server per family; the server notifies each
 * mapping it has), so a request reaches it when either path is down, and an IPv6-only client's
 * server still has a way to wake it. A server given as an IP literal is registered with over that
 * family only; a name is registered with over IPv4 and, where it has an AAAA record and the host
 * an IPv6 route, over IPv6 too (the IPv6 registrar is `optional`: its absence is not an error).
 *
 * The server sends a request's notification to every mapping: the first to arrive is passed on,
 * the other dropped here (the agent would otherwise refuse it as a replayed wake, P9, and the
 * server would end the request).
 */
import { isIP } from 'node:net';
import type { Endpoint } from '../protocol/address.js';
import { createRegistrar, type Registrar, type RegistrarOptions, type RegistrarStatus } from './registrar.js';

const NOTIFY_DEDUP_MS = 60_000;
/** Request IDs remembered at once (bounded: a flood of notifications cannot grow it). */
const NOTIFY_DEDUP_MAX = 4096;

export interface FamilyStatus {
  readonly state: RegistrarStatus['state'];
  readonly publicEndpoint: Endpoint | null;
}

export interface DualRegistrar extends Registrar {
  /** Each family's registration (absent: not attempted, the server is a literal of the other). */
  families(): { readonly ipv4?: FamilyStatus; readonly ipv6?: FamilyStatus };
}

/** Which families to register over for `serverHost`: a literal's own, both for a name. */
export function familiesFor(serverHost: string): readonly (4 | 6)[] {
  const literal = isIP(serverHost);
  return literal === 4 ? [4] : literal === 6 ? [6] : [4, 6];
}

export function createDualRegistrar(options: RegistrarOptions): DualRegistrar {
  const families = familiesFor(options.serverHost);
  const seen = new Map<string, number>();
  const onNotify: RegistrarOptions['onNotify'] = (requestId, wake) => {
    const key = requestId.toString('hex');
    const now = options.clock.now();
    for (const [k, until] of seen) if (until < now) seen.delete(k);
    if (seen.has(key)) return;
    if (seen.size >= NOTIFY_DEDUP_MAX) seen.delete(seen.keys().next().value as string);
    seen.set(key, now + NOTIFY_DEDUP_MS);
    options.onNotify(requestId, wake);
  };
  const byFamily = new Map<4 | 6, Registrar>();
  let combined: () => RegistrarStatus = () => byFamily.values().next().value!.status();
  const onStatus = options.onStatus ? (): void => options.onStatus!(combined()) : undefined;
  const { keepalive, fetchServerTime, onStatus: _ignored, ...common } = options;
  for (const family of families) {
    const second = families.length > 1 && family === 6;
    byFamily.set(
      family,
      createRegistrar({
        ...common,
        family,
        onNotify,
        ...(onStatus ? { onStatus } : {}),
        logger: families.length > 1 ? options.logger.child({ family: `ipv${family}` }) : options.logger,
        // The adaptive keepalive learns one NAT's mapping lifetime: the first family's. The IPv6
        // firewall pinhole beside it is kept at the fixed interval; the server's time is fetched once.
        ...(second ? { optional: true } : { ...(keepalive ? { keepalive } : {}), ...(fetchServerTime ? { fetchServerTime } : {}) }),
      }),
    );
  }
  const all = [...byFamily.values()];
  /** The registrar that answers for the device: the first registered, in family order (IPv4 first). */
  const primary = (): Registrar => all.find((r) => r.status().state === 'registered') ?? all[0]!;
  combined = () => primary().status();
  return {
    // The first family's (IPv4 when both): the other's are in its log lines.
    counters: all[0]!.counters,
    status: () => combined(),
    families() {
      const f = (r: Registrar | undefined): FamilyStatus | undefined =>
        r ? { state: r.status().state, publicEndpoint: r.status().publicEndpoint } : undefined;
      const v4 = f(byFamily.get(4));
      const v6 = f(byFamily.get(6));
      return { ...(v4 ? { ipv4: v4 } : {}), ...(v6 ? { ipv6: v6 } : {}) };
    },
    serverNow: () => primary().serverNow(),
    observeServerTime(serverTimeMs, localMs) {
      for (const r of all) r.observeServerTime(serverTimeMs, localMs);
    },
    registerNow() {
      for (const r of all) r.registerNow();
    },
    refuse(requestId, reason) {
      for (const r of all) if (r.status().state === 'registered') r.refuse(requestId, reason);
    },
    async start() {
      for (const r of all) await r.start();
    },
    async stop() {
      await Promise.all(all.map((r) => r.stop()));
    },
  };
}
