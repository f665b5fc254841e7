/**
 * The Redis backend: the equipment list shared by every server node, the connection requests
 * waiting for their device (so the device may attach at any node), and the messages between
 * nodes (Redis pub/sub), over one existing distributed engine instead of a home-made cluster.
 *
 * Key design (Redis Cluster-compatible: every command touches one key, hash tags pin it):
 *   <prefix>{d:<equipment ID>}   hash a=address p=port s=last seen t=last registration timestamp
 *                                n=node g=identity generation (identity-name.ts); PEXPIRE forget_after_ms, so it goes by itself when the
 *                                device stops registering; x=1: `s` is the device's last registration (its holder
 *                                marked it stale, see `staleMark`), not a write up to refresh_after_ms older
 *   <prefix>{r:<request ID hex>} string (JSON) of a request waiting for its device; PX attach timeout
 *   <prefix>{o:<request ID hex>} string (JSON) of a relay offer (relay-bridge.ts, through putValue); PX join timeout
 *   <prefix>{n:<node ID>}        liveness of one node: set every `livenessMs`, PX 5 × that; deleted at stop
 *   <prefix>n:<node ID>          pub/sub channel of one node
 * Values and messages are decoded and checked by node-messages.ts; what fails is dropped and counted.
 * The compare-and-set of a registration (newer timestamp only, P1) is one Lua script, so two nodes
 * cannot both accept replays of each other's registrations.
 *
 * Outage: commands fail fast (no offline queue, a command timeout) so a node never stalls on Redis;
 * the client reconnects on its own with back-off and resubscribes; `up` and `onState` tell the
 * node, which serves what it can from its local list meanwhile (see registration-endpoint.ts,
 * connection-broker.ts). ioredis is loaded only when this backend is configured (dynamic import).
 */
import type { Cluster as ClusterClient, Redis as RedisClient } from 'ioredis';
import type { Logger } from 'pino';
import { Counters } from '../common/counters.js';
import {
  decodeNodeMessage,
  decodePendingRecord,
  droppedField,
  encodeNodeMessage,
  encodePendingRecord,
  type NodeMessage,
  type PendingRecord,
} from './node-messages.js';
import type { RecordResult, Registry, RegistryBackend, RegistryEntry } from './registry.js';
import { isGeneration } from '../protocol/identity-name.js';
import { keySlot } from './redis-slot.js';
import { createRedisClients, redisMode, type RedisConnectOptions, type WithScripts } from './redis-clients.js';
import { createWriteBatch, type RecordFields } from './redis-write-batch.js';
import { createRedisLiveness, LIVENESS_MS } from './redis-liveness.js';

export type { NodeMessage, PendingRecord } from './node-messages.js';
export { SLOTS_REFRESH_MS, FAST_SLOTS_REFRESH_MS, FAST_SLOTS_REFRESH_FOR_MS } from './redis-clients.js';
export { STALE_SCAN_MS, LIVENESS_MS, LIVENESS_TTL_FACTOR } from './redis-liveness.js';

/** What this node read from Redis and dropped because it did not decode (node-messages.ts). */
export const MALFORMED_KINDS = ['message', 'pending'] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];

export interface RedisRegistryOptions extends RedisConnectOptions {
  /** One Redis (or a Sentinel-less primary): redis:// or rediss:// URL. Exactly one of url and clusterNodes. */
  readonly url?: string;
  /** Redis Cluster seed nodes ("host:port"); the client learns the rest of the cluster from them. */
  readonly clusterNodes?: readonly string[];
  /**
   * With clusterNodes: the password (requirepass, or an ACL user's with `username`) every
   * cluster node asks for. With url it goes in the URL. Never logged.
   */
  readonly username?: string;
  readonly password?: string;
  readonly nodeId: string;
  readonly keyPrefix: string;
  /** Entries expire this long after the last registration. */
  readonly forgetAfterMs: number;
  /**
   * Write on change: a node rewrites an unchanged entry it holds only this long after its last
   * write (registration-endpoint.ts); also how long another node must wait before taking over a
   * device whose holder keeps it fresh, unless the new registration is that much newer (P1, see RECORD_LUA).
   */
  readonly refreshAfterMs?: number;
  readonly logger: Logger;
  /** A command that takes longer fails (ms); the node then serves from its local list. */
  readonly commandTimeoutMs?: number;
  /**
   * Commands issued in one turn of the event loop go out as one write per Redis (ioredis auto
   * pipelining; default true). A registration's write otherwise costs the node a socket write of
   * its own, several times the rest of the registration (npm run bench -- fleet). False: the bench's "before".
   */
  readonly autoPipelining?: boolean;
  /**
   * Registrations' writes wait up to this long (ms) to go out together (default
   * WRITE_BATCH_MS; 0: at once). At a few hundred registrations a second each write would
   * otherwise go alone and its reply wake the node alone, several times the cost of the rest of the
   * registration; together they share one socket write and one reply per primary. Only a written
   * registration's ack waits, by at most this.
   */
  readonly writeBatchMs?: number;
  /**
   * Redis Cluster: how often (ms) the clients re-read the cluster's topology while nothing is
   * wrong (default SLOTS_REFRESH_MS). Each read opens a connection, so at one a second it cost an
   * idle node 3.3-3.5% of a core (npm run bench -- fleet). A lost connection to a cluster node
   * switches to FAST_SLOTS_REFRESH_MS for FAST_SLOTS_REFRESH_FOR_MS (a failover is learnt as fast as
   * before); MOVED and CLUSTERDOWN replies make ioredis re-read at once anyway.
   */
  readonly slotsRefreshMs?: number;
  /**
   * How often (ms) this node renews its liveness key (default LIVENESS_MS; it lives
   * LIVENESS_TTL_FACTOR times that). A device held by a node whose key is gone (the node died, or
   * lost Redis) is taken over at its next registration elsewhere, however fresh its entry looks.
   */
  readonly livenessMs?: number;
  /**
   * This node's own list and `stale_after_ms`: every STALE_SCAN_MS (at most half of
   * staleAfterMs) the node marks in Redis each device it holds that has gone stale in its own
   * list, with its exact last registration (x=1): other nodes then call it stale at once rather
   * than `refresh_after_ms` later (write on change lets `s` lag). One write per device that
   * stops registering.
   */
  readonly staleMark?: { readonly registry: Registry; readonly staleAfterMs: number };
}

export interface RedisRegistry extends RegistryBackend {
  readonly kind: 'redis';
  readonly nodeId: string;
  /** "cluster" with Redis Cluster seed nodes (sharded pub/sub), "single" with one URL. */
  readonly mode: 'single' | 'cluster';
  readonly refreshAfterMs: number;
  /**
   * Entries this node wrote before this time (ms) may be lost: Redis restarted, or a cluster
   * primary failed over (replication is asynchronous). A registration rewrites such an entry.
   */
  readonly writesValidSinceMs: number;
  lookup(equipmentId: string): Promise<RegistryEntry | undefined>;
  record(equipmentId: string, entry: RegistryEntry): Promise<RecordResult>;
  /** Connected and answering. */
  readonly up: boolean;
  onState(listener: (up: boolean) => void): void;
  onMessage(listener: (m: NodeMessage) => void): void;
  /** Messages and pending records read from Redis that did not decode, dropped. */
  readonly malformed: Counters<MalformedKind>;
  /** Publish to a node; resolves with how many subscribers got it (0: that node is not running). */
  send(node: string, m: NodeMessage): Promise<number>;
  putPending(requestIdHex: string, rec: PendingRecord, ttlMs: number): Promise<void>;
  /** Undefined when there is none, or when what is stored does not decode (dropped and counted). */
  getPending(requestIdHex: string): Promise<PendingRecord | undefined>;
  /** Remove the request; true for the one caller that removed it (so a request is served once). */
  claimPending(requestIdHex: string): Promise<boolean>;
  /** A short-lived value under <prefix><key> (the key must carry its own hash tag). */
  putValue(key: string, value: string, ttlMs: number): Promise<void>;
  getValue(key: string): Promise<string | undefined>;
  /**
   * Fleet-wide GCRA (rate-limiter.ts) on <prefix>{l:<name>:<key>}, one atomic round trip (Lua,
   * Redis's own clock): true if allowed; `charge` false only checks.
   */
  limit(name: string, key: string, intervalMs: number, toleranceMs: number, charge: boolean): Promise<boolean>;
  /** Connect (does not fail when Redis is down: the node starts degraded and keeps retrying). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The underlying client once started, for benchmarks and tests (INFO memory). */
  readonly client: RedisClient | ClusterClient;
}

/** Default of `refreshAfterMs`: an unchanged entry is rewritten every 3 minutes (1 registration in 8 at 25 s); safe with the liveness key and stale marks. */
export const SHARED_REFRESH_AFTER_MS = 180_000;
/** Default of `writeBatchMs`: far below a device's round trip to the server, and enough to gather writes at a few hundred a second. */
export const WRITE_BATCH_MS = 5;

/** Synchronous to build; ioredis is imported and the connections opened by `start()`. */
export function createRedisRegistry(o: RedisRegistryOptions): RedisRegistry {
  if ((o.url === undefined) === (o.clusterNodes === undefined || o.clusterNodes.length === 0)) {
    throw new Error('the Redis registry needs exactly one of url and clusterNodes');
  }
  if (o.url !== undefined && (o.password !== undefined || o.username !== undefined)) {
    throw new Error('with url the Redis password goes in the URL (redis://user:password@host:port), not in password');
  }
  const mode = redisMode(o);
  const refreshAfterMs = Math.min(o.refreshAfterMs ?? SHARED_REFRESH_AFTER_MS, Math.floor(o.forgetAfterMs / 2));
  let clientOrNull: WithScripts | null = null;
  let subOrNull: RedisClient | ClusterClient | null = null;
  let stopClients: (() => void) | null = null;
  let writesValidSinceMs = 0;
  const c = (): WithScripts => {
    if (!clientOrNull) throw new Error('the Redis registry is not started');
    return clientOrNull;
  };
  const channel = `${o.keyPrefix}n:${o.nodeId}`;
  const deviceKey = (id: string): string => `${o.keyPrefix}{d:${id}}`;
  const requestKey = (hex: string): string => `${o.keyPrefix}{r:${hex}}`;
  const stateListeners: ((up: boolean) => void)[] = [];
  const messageListeners: ((m: NodeMessage) => void)[] = [];
  let up = false;
  let stopping = false;
  const log = o.logger.child({ component: 'redis' });
  const recordOne = (key: string, f: RecordFields, dead = ''): Promise<string> =>
    c().plRecord(key, f[0], f[1], f[2], f[3], f[4], o.forgetAfterMs, refreshAfterMs, f[5], dead);
  // Liveness and stale marks (redis-liveness.ts).
  const liveness = createRedisLiveness({
    keyPrefix: o.keyPrefix,
    nodeId: o.nodeId,
    livenessMs: o.livenessMs ?? LIVENESS_MS,
    ...(o.staleMark ? { staleMark: o.staleMark } : {}),
    client: () => (stopping ? null : clientOrNull),
    up: () => up,
    deviceKey,
    log,
  });
  /** The primary (node key) that owns the key's slot, as the client knows it; undefined: unknown. */
  const primaryOf = (key: string): string | undefined =>
    mode === 'single' ? 'main' : (clientOrNull as ClusterClient | null)?.slots[keySlot(key)]?.[0];
  // Write batching (writeBatchMs, redis-write-batch.ts).
  const writes = createWriteBatch({
    batchMs: o.writeBatchMs ?? WRITE_BATCH_MS,
    recordOne: (key, f) => recordOne(key, f),
    recordMany: (ws) => {
      const args: (string | number)[] = [1, ws[0]!.key, o.forgetAfterMs, refreshAfterMs];
      for (const w of ws) args.push(w.key, ...w.fields);
      return c().plRecordMany(...args);
    },
    primaryOf: (key) => (clientOrNull === null ? undefined : primaryOf(key)),
    logger: log,
  });

  const setUp = (v: boolean, why: string): void => {
    if (v === up) return;
    up = v;
    // Back from an outage: Redis may have restarted empty; every entry is rewritten.
    if (v) writesValidSinceMs = Date.now();
    if (v) log.info({ node: o.nodeId }, 'redis reachable: the shared registry is in use');
    else if (!stopping) log.error({ why }, 'redis unreachable: serving devices registered at this node only; retrying');
    for (const l of stateListeners) l(v);
  };
  const malformed = new Counters<MalformedKind>(MALFORMED_KINDS);
  const onNodeMessage = (_ch: string, text: string): void => {
    let m: NodeMessage;
    try {
      m = decodeNodeMessage(text);
    } catch (err) {
      malformed.inc('message');
      log.debug({ field: droppedField(err), err: (err as Error).message }, 'dropped a malformed message from another node');
      return;
    }
    for (const l of messageListeners) l(m);
  };

  const reg: RedisRegistry = {
    kind: 'redis',
    nodeId: o.nodeId,
    mode,
    refreshAfterMs,
    // A shared entry's `s` is its holder's last write, up to refreshAfterMs before the device's last registration.
    lastSeenSlackMs: refreshAfterMs,
    get writesValidSinceMs() {
      return writesValidSinceMs;
    },
    get client() {
      return c();
    },
    get up() {
      return up;
    },
    onState: (l) => void stateListeners.push(l),
    onMessage: (l) => void messageListeners.push(l),
    malformed,
    async lookup(id): Promise<RegistryEntry | undefined> {
      const [a, p, s, t, n, g, x] = await c().hmget(deviceKey(id), 'a', 'p', 's', 't', 'n', 'g', 'x');
      if (a === null || a === undefined) return undefined;
      const generation = Number(g ?? 0);
      return {
        address: a,
        port: Number(p),
        lastSeenMs: Number(s),
        lastTimestampMs: Number(t),
        node: n ?? '',
        ...(isGeneration(generation) && generation !== 0 ? { generation } : {}),
        ...(x === '1' ? { lastSeenExact: true } : {}),
      };
    },
    async record(id, e): Promise<RecordResult> {
      const node = e.node ?? o.nodeId;
      const fields: RecordFields = [e.address, e.port, e.lastSeenMs, e.lastTimestampMs, node, e.generation ?? 0];
      let r = await writes.queue(deviceKey(id), fields);
      // Held by a node whose liveness key is gone: decided again, that node counting as dead.
      if (r.startsWith('h|') && !(await liveness.alive(r.slice(2)))) r = await recordOne(deviceKey(id), fields, r.slice(2));
      if (r === '0') return { outcome: 'replayed' };
      if (r.startsWith('h')) return { outcome: 'held' };
      if (r === '1') return { outcome: 'accepted', moved: true, previous: undefined };
      const [, a, p, s, t, n] = r.split('|');
      const previous = { address: a!, port: Number(p), lastSeenMs: Number(s), lastTimestampMs: Number(t), node: n ?? '' };
      return { outcome: 'accepted', moved: previous.address !== e.address || previous.port !== e.port, previous };
    },
    sweep: () => 0,
    async send(node, m) {
      const ch = `${o.keyPrefix}n:${node}`;
      // Sharded pub/sub on a cluster: the message goes to the one shard that owns the channel's
      // slot, not to every node of the cluster (PUBLISH broadcasts over the cluster bus).
      return mode === 'cluster' ? (c().spublish(ch, encodeNodeMessage(m)) as Promise<number>) : c().publish(ch, encodeNodeMessage(m));
    },
    async putPending(hex, rec, ttlMs) {
      await c().set(requestKey(hex), encodePendingRecord(rec), 'PX', ttlMs);
    },
    async getPending(hex) {
      const v = await c().get(requestKey(hex));
      if (v === null) return undefined;
      try {
        return decodePendingRecord(v);
      } catch (err) {
        malformed.inc('pending');
        log.debug(
          { requestId: hex.slice(0, 12), field: droppedField(err), err: (err as Error).message },
          'dropped a malformed pending request read from Redis',
        );
        return undefined;
      }
    },
    async claimPending(hex) {
      return (await c().del(requestKey(hex))) === 1;
    },
    async putValue(key, value, ttlMs) {
      await c().set(`${o.keyPrefix}${key}`, value, 'PX', ttlMs);
    },
    async getValue(key) {
      return (await c().get(`${o.keyPrefix}${key}`)) ?? undefined;
    },
    async limit(name, key, intervalMs, toleranceMs, charge) {
      return (await c().plLimit(`${o.keyPrefix}{l:${name}:${key}}`, intervalMs, toleranceMs, charge ? 1 : 0)) === 1;
    },
    async start() {
      const built = await createRedisClients(o, {
        onMessage: onNodeMessage,
        onPrimaryLost: () => (writesValidSinceMs = Date.now()),
        log,
      });
      const { client, sub } = built;
      stopClients = built.stop;
      client.on('ready', () => {
        setUp(true, 'ready');
        liveness.renew();
      });
      liveness.start();
      client.on('close', () => setUp(false, 'connection closed'));
      client.on('error', (err: Error) => log.debug({ err: err.message }, 'redis error'));
      sub.on('error', (err: Error) => log.debug({ err: err.message }, 'redis subscriber error'));
      clientOrNull = client;
      subOrNull = sub;
      // Neither connect may fail the start: a node comes up degraded and the clients keep retrying.
      await Promise.all([
        client.connect().catch((err: Error) => log.error({ err: err.message }, 'redis unreachable at start; retrying')),
        sub.connect().catch(() => undefined),
      ]);
      // Queued until the subscriber connection is up; ioredis resubscribes after every reconnect
      // (and, on a cluster, on the shard that owns the channel after a failover).
      const subscribed = mode === 'cluster' ? sub.ssubscribe(channel) : sub.subscribe(channel);
      void subscribed.catch((err: Error) => log.warn({ err: err.message }, 'subscribe failed'));
    },
    async stop() {
      stopping = true;
      stopClients?.();
      // Queued writes go out now (or fail, once the client is gone), none is left waiting.
      writes.flush();
      const client = clientOrNull;
      const sub = subOrNull;
      // Gone on purpose: other nodes take this node's devices over at their next registration.
      await liveness.stop(client);
      clientOrNull = null;
      subOrNull = null;
      await Promise.all([client?.quit().catch(() => client.disconnect()), sub?.quit().catch(() => sub.disconnect())]);
    },
  };
  return reg;
}
