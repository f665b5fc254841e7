/**
 * The first steps of a client's connection request, before the device is woken: the limits
 * (per source, failed authentications per source, per device, P9; fleet-wide through Redis when
 * the limiters are shared, rate-limiter.ts) and S204 (look the device up:
 * unknown, stale, busy). A request either gets its refusal, or what the rest of the broker needs.
 */
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import type { Counters } from '../common/counters.js';
import { Status, STATUS_TEXT, type StatusValue } from '../protocol/status.js';
import type { BrokerCounter } from './broker-counters.js';
import type { PendingRequests } from './pending-requests.js';
import { lookupMappings, type DeviceMappings } from './family-key.js';
import { peekLimit, sourceKey, takeLimit, type RateLimiter } from './rate-limiter.js';
import type { Registry, RegistryBackend, RegistryEntry } from './registry.js';

/**
 * Requests one source address may have waiting for one device, so that one source cannot hold all
 * of its slots (`requests.max_pending_per_device`, 32). Strangers' requests hold a slot only until
 * the device's REFUSE arrives, one round trip (P9).
 */
export const MAX_PENDING_PER_SOURCE_PER_DEVICE = 8;

export interface AdmissionContext {
  readonly registry: Registry;
  readonly backend: RegistryBackend;
  readonly pending: PendingRequests;
  readonly counters: Counters<BrokerCounter>;
  readonly clock: Clock;
  readonly staleAfterMs: number;
  readonly maxPendingPerDevice: number;
  readonly sourceLimiter?: RateLimiter | undefined;
  /** Checked here, charged when the device attaches (P9). */
  readonly targetLimiter?: RateLimiter | undefined;
  readonly authFailureLimiter?: RateLimiter | undefined;
  /** The operator's deny list (deny-list.ts): the whole ID, or (given) one identity generation of it. */
  readonly denied?: ((equipmentId: string, generation?: number) => boolean) | undefined;
}

export type Admission =
  | {
      readonly admitted: true;
      /** The requester's limit key (rate-limiter.ts `sourceKey`). */
      readonly source: string;
      readonly entry: RegistryEntry;
      /** Every fresh mapping of the device, one per family (`entry` among them): each is notified. */
      readonly mappings: readonly RegistryEntry[];
      /** The entry came from the shared list (not this node's own after a Redis failure). */
      readonly shared: boolean;
    }
  | { readonly admitted: false; readonly status: StatusValue; readonly detail?: string };

const refuse = (status: StatusValue, detail?: string): Admission => ({
  admitted: false,
  status,
  ...(detail === undefined ? {} : { detail }),
});

export async function admitRequest(ctx: AdmissionContext, equipmentId: string, clientAddress: string, log: Logger): Promise<Admission> {
  const { counters } = ctx;
  const source = sourceKey(clientAddress);
  if (ctx.denied?.(equipmentId)) {
    counters.inc('denied');
    log.info('connection request refused: the device is on the deny list');
    return refuse(Status.DEVICE_DENIED);
  }
  if (ctx.sourceLimiter && !(await takeLimit(ctx.sourceLimiter, source))) {
    counters.inc('rateLimitedSource');
    log.info({ client: clientAddress }, 'connection request refused: rate limit per source address');
    return refuse(Status.RATE_LIMITED, `${STATUS_TEXT[Status.RATE_LIMITED]} (limit per source address)`);
  }
  if (ctx.authFailureLimiter && !(await peekLimit(ctx.authFailureLimiter, source))) {
    counters.inc('rateLimitedAuthFailures');
    log.info({ client: clientAddress }, 'connection request refused: too many requests from this address failed authentication');
    return refuse(Status.RATE_LIMITED, `${STATUS_TEXT[Status.RATE_LIMITED]} (too many wrong passwords from this address)`);
  }
  // Only checked here: charged when the device attaches, so requests it refuses cost the owner nothing (P9).
  if (ctx.targetLimiter && !(await peekLimit(ctx.targetLimiter, equipmentId))) {
    counters.inc('rateLimitedTarget');
    log.info('connection request refused: rate limit per device');
    return refuse(Status.RATE_LIMITED, `${STATUS_TEXT[Status.RATE_LIMITED]} (limit per device)`);
  }

  // S204, against the shared list; when it cannot be reached, against this node's own list. Both
  // of the device's mappings, one per family (family-key.ts), are looked up at once.
  let found: DeviceMappings;
  let shared = ctx.backend !== ctx.registry;
  try {
    found = await lookupMappings((k) => ctx.backend.lookup(k), equipmentId);
  } catch (err) {
    shared = false;
    found = await lookupMappings((k) => ctx.registry.get(k), equipmentId);
    if (!found.v4 && !found.v6) {
      counters.inc('registryUnavailable');
      log.warn({ err: (err as Error).message }, 'S204 shared registry unreachable and the device is not registered at this node');
      return refuse(
        Status.SERVER_DEGRADED,
        'the server cannot reach its shared registry now, and the device is not registered at this node; try again shortly',
      );
    }
    log.warn('S204 shared registry unreachable; the device is registered at this node, serving it from the local list');
  }
  if (!found.v4 && !found.v6) {
    counters.inc('unknownDevice');
    log.info('S204 device not in the equipment list');
    return refuse(Status.UNKNOWN_DEVICE);
  }
  const now = ctx.clock.now();
  // A shared entry is rewritten only every refresh period while unchanged (write on change),
  // unless its holder marked it stale with the exact last registration.
  const slackMs = shared ? (ctx.backend.lastSeenSlackMs ?? 0) : 0;
  const fresh = [found.v4, found.v6].filter(
    (e): e is RegistryEntry => e !== undefined && now - e.lastSeenMs <= ctx.staleAfterMs + (e.lastSeenExact ? 0 : slackMs),
  );
  if (fresh.length === 0) {
    const ageMs = now - Math.max(found.v4?.lastSeenMs ?? -Infinity, found.v6?.lastSeenMs ?? -Infinity);
    counters.inc('staleDevice');
    log.info({ ageMs }, 'S204 device entry is stale');
    return refuse(Status.DEVICE_STALE, `${STATUS_TEXT[Status.DEVICE_STALE]}: last seen ${Math.round(ageMs / 1000)} s ago`);
  }
  // The entry that decides who holds the device: the one heard from last.
  const entry = fresh.reduce((a, b) => (b.lastSeenMs > a.lastSeenMs ? b : a));
  // The identity generation that registered is denied (one that registers after this one was denied never is).
  if (ctx.denied?.(equipmentId, entry.generation ?? 0)) {
    counters.inc('denied');
    log.info({ generation: entry.generation ?? 0 }, 'connection request refused: the registered identity generation is on the deny list');
    return refuse(Status.DEVICE_DENIED);
  }
  if (
    ctx.pending.countForSource(equipmentId, source) >= MAX_PENDING_PER_SOURCE_PER_DEVICE ||
    ctx.pending.countFor(equipmentId) >= ctx.maxPendingPerDevice
  ) {
    counters.inc('busy');
    return refuse(Status.DEVICE_BUSY);
  }
  return { admitted: true, source, entry, mappings: fresh, shared };
}
