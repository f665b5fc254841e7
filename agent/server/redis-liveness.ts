/**
 * A node's standing in the Redis fleet (redis-registry.ts): its liveness key, renewed on a timer
 * while Redis answers, which other nodes read before taking one of its devices over; and the
 * stale marks, written for devices this node holds whose own-list entry went stale, so other
 * nodes learn the device's exact last registration at once (write on change lets `s` lag).
 */
import type { Logger } from 'pino';
import type { Registry } from './registry.js';
import type { WithScripts } from './redis-clients.js';

/** How often the node looks for devices gone stale in its own list (`staleMark`). */
export const STALE_SCAN_MS = 5000;
/** Marks issued per scan at most (the rest at the next): a mass outage does not flood Redis. */
const STALE_MARKS_PER_SCAN = 2000;
/** Default of `livenessMs`: a dead node's devices can be taken over LIVENESS_TTL_FACTOR times this after its last renewal. */
export const LIVENESS_MS = 2000;
/** A liveness key outlives this many missed renewals (a slow event loop, a command timeout) less one. */
export const LIVENESS_TTL_FACTOR = 5;

export interface RedisLivenessOptions {
  readonly keyPrefix: string;
  readonly nodeId: string;
  readonly livenessMs: number;
  readonly staleMark?: { readonly registry: Registry; readonly staleAfterMs: number };
  /** The command client while started and not stopping, else null. */
  readonly client: () => WithScripts | null;
  /** Redis reachable now. */
  readonly up: () => boolean;
  /** A device's hash key. */
  readonly deviceKey: (id: string) => string;
  readonly log: Logger;
}

export interface RedisLiveness {
  /** Set this node's key now (also done by the timer). */
  renew(): void;
  /** False only when Redis says the node's key is gone; an error counts as alive (the device stays held). */
  alive(node: string): Promise<boolean>;
  start(): void;
  /** Stops the timers and deletes this node's key: other nodes take its devices over at their next registration. */
  stop(client: WithScripts | null): Promise<void>;
}

export function createRedisLiveness(o: RedisLivenessOptions): RedisLiveness {
  const livenessKey = (node: string): string => `${o.keyPrefix}{n:${node}}`;
  let livenessTimer: NodeJS.Timeout | null = null;
  let staleTimer: NodeJS.Timeout | null = null;
  let scanning = false;
  const renew = (): void => {
    const c = o.client();
    if (!c || !o.up()) return;
    c.set(livenessKey(o.nodeId), '1', 'PX', o.livenessMs * LIVENESS_TTL_FACTOR).catch((err: Error) =>
      o.log.debug({ err: err.message }, 'liveness key not renewed'),
    );
  };
  // The local entry's sharedAtMs is cleared once marked, so it is not marked again; a registration
  // after it is written, which clears the mark.
  const scanStale = async (): Promise<void> => {
    const m = o.staleMark;
    const c = o.client();
    if (!m || !c || !o.up() || scanning) return;
    scanning = true;
    try {
      const due = m.registry.staleShared(Date.now() - m.staleAfterMs, STALE_MARKS_PER_SCAN);
      await Promise.all(
        due.map(async ([id, e]) => {
          await c.plMarkStale(o.deviceKey(id), o.nodeId, e.lastSeenMs, e.lastTimestampMs);
          const now = m.registry.get(id);
          if (now && now.lastTimestampMs === e.lastTimestampMs) m.registry.set(id, { ...now, sharedAtMs: undefined });
        }),
      );
    } catch (err) {
      o.log.debug({ err: (err as Error).message }, 'stale marks not written; retrying at the next scan');
    } finally {
      scanning = false;
    }
  };
  return {
    renew,
    alive: (node) => {
      const c = o.client();
      if (!c) return Promise.resolve(true);
      return c.exists(livenessKey(node)).then(
        (n) => n !== 0,
        () => true,
      );
    },
    start() {
      livenessTimer = setInterval(renew, o.livenessMs).unref();
      if (o.staleMark) {
        const every = Math.min(STALE_SCAN_MS, Math.max(100, Math.floor(o.staleMark.staleAfterMs / 2)));
        staleTimer = setInterval(() => void scanStale(), every).unref();
      }
    },
    async stop(client) {
      if (livenessTimer) clearInterval(livenessTimer);
      livenessTimer = null;
      if (staleTimer) clearInterval(staleTimer);
      staleTimer = null;
      await client?.del(livenessKey(o.nodeId)).catch(() => undefined);
    },
  };
}
