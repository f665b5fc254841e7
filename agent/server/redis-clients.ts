/**
 * The two Redis connections of a node's registry (redis-registry.ts): one for commands, one for
 * the node's pub/sub channel; a single Redis (a URL) or a Redis Cluster (seed nodes, sharded
 * pub/sub). Also the fast topology refresh after a lost cluster node. ioredis is imported here,
 * when the Redis backend starts, never on the path of a node without it.
 */
import type { Cluster as ClusterClient, Redis as RedisClient } from 'ioredis';
import type { Logger } from 'pino';
import { RECORD_LUA, RECORD_MANY_LUA, LIMIT_LUA, MARK_STALE_LUA } from './redis-scripts.js';

const COMMAND_TIMEOUT_MS = 1000;
const CONNECT_TIMEOUT_MS = 2000;
const RECONNECT_MAX_MS = 2000;
/** Default of `slotsRefreshMs`: a topology change that no error reveals (resharding answers MOVED) is learnt within this. */
export const SLOTS_REFRESH_MS = 30_000;
/** After a cluster node's connection is lost: the topology is re-read this often (a promoted replica is learnt within it) ... */
export const FAST_SLOTS_REFRESH_MS = 1000;
/** ... until this long after the last lost connection (covers cluster-node-timeout and the promotion; Redis's default timeout is 15 s). */
export const FAST_SLOTS_REFRESH_FOR_MS = 60_000;

/** The Lua scripts (redis-scripts.ts) as commands of the client. */
export interface Scripts {
  plRecordMany(...args: (string | number)[]): Promise<string[]>;
  plRecord(
    key: string,
    a: string,
    p: number,
    s: number,
    t: number,
    n: string,
    ttl: number,
    refresh: number,
    g: number,
    dead: string,
  ): Promise<string>;
  plLimit(key: string, intervalMs: number, toleranceMs: number, charge: number): Promise<number>;
  plMarkStale(key: string, node: string, seen: number, t: number): Promise<number>;
}
export type WithScripts = (RedisClient | ClusterClient) & Scripts;

/** Where Redis is and how to talk to it: the connection part of RedisRegistryOptions. */
export interface RedisConnectOptions {
  readonly url?: string;
  readonly clusterNodes?: readonly string[];
  readonly username?: string;
  readonly password?: string;
  readonly commandTimeoutMs?: number;
  readonly autoPipelining?: boolean;
  readonly slotsRefreshMs?: number;
}

export interface RedisClients {
  readonly client: WithScripts;
  readonly sub: RedisClient | ClusterClient;
  /** Ends the fast topology refresh (the connections are the caller's to quit). */
  stop(): void;
}

export interface RedisClientHooks {
  /** A message on this node's channel (PUBLISH on a single Redis, SPUBLISH on a cluster). */
  readonly onMessage: (channel: string, text: string) => void;
  /** A cluster primary was lost: writes acknowledged just before may be lost with it. */
  readonly onPrimaryLost: () => void;
  readonly log: Logger;
}

export function redisMode(o: RedisConnectOptions): 'single' | 'cluster' {
  return o.url === undefined ? 'cluster' : 'single';
}

/** Build both clients (not connected yet: lazyConnect) with the scripts defined. */
export async function createRedisClients(o: RedisConnectOptions, hooks: RedisClientHooks): Promise<RedisClients> {
  const { Redis, Cluster } = await import('ioredis');
  const common = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: o.commandTimeoutMs ?? COMMAND_TIMEOUT_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    retryStrategy: (times: number) => Math.min(100 * times, RECONNECT_MAX_MS),
    enableAutoPipelining: o.autoPipelining ?? true,
    // A batch's call carries keys of many slots: sent as it is, not in a pipeline (which wants one slot).
    autoPipeliningIgnoredCommands: ['plRecordMany'],
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
  };
  let stopping = false;
  let fastTimer: NodeJS.Timeout | null = null;
  let client: WithScripts;
  let sub: RedisClient | ClusterClient;
  if (redisMode(o) === 'single') {
    client = new Redis(o.url!, common) as unknown as WithScripts;
    sub = new Redis(o.url!, {
      ...common,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      commandTimeout: undefined,
      enableAutoPipelining: false,
    });
    sub.on('message', hooks.onMessage);
  } else {
    const seeds = o.clusterNodes!.map((h) => {
      const at = /^(.*):(\d+)$/.exec(h)!;
      return { host: at[1]!.replace(/^\[|\]$/g, ''), port: Number(at[2]) };
    });
    const clusterOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableAutoPipelining: common.enableAutoPipelining,
      autoPipeliningIgnoredCommands: common.autoPipeliningIgnoredCommands,
      // Slow while all is well; a lost node connection speeds it up (fastRefresh below).
      slotsRefreshInterval: o.slotsRefreshMs ?? SLOTS_REFRESH_MS,
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      clusterRetryStrategy: common.retryStrategy,
      redisOptions: { ...common, lazyConnect: undefined, retryStrategy: undefined },
    };
    const cluster = new Cluster(seeds, clusterOptions);
    client = cluster as unknown as WithScripts;
    // One subscriber connection per primary (SSUBSCRIBE): this node's channel lives on one shard.
    const subCluster = new Cluster(seeds, {
      ...clusterOptions,
      enableOfflineQueue: true,
      enableAutoPipelining: false,
      shardedSubscribers: true,
      redisOptions: { ...clusterOptions.redisOptions, maxRetriesPerRequest: null, commandTimeout: undefined },
    });
    sub = subCluster;
    subCluster.on('smessage', hooks.onMessage);
    // Fast topology refresh after a lost cluster node (slotsRefreshMs): both clients re-read the
    // slots every FAST_SLOTS_REFRESH_MS until FAST_SLOTS_REFRESH_FOR_MS after the last loss, so a
    // promoted replica is learnt within a second of its promotion, as with a 1 s periodic refresh.
    let fastUntilMs = 0;
    const fastTick = (): void => {
      fastTimer = null;
      if (stopping) return;
      cluster.refreshSlotsCache();
      subCluster.refreshSlotsCache();
      if (Date.now() < fastUntilMs) fastTimer = setTimeout(fastTick, FAST_SLOTS_REFRESH_MS).unref();
    };
    // A lost connection to a node the client still routes slots to (a node dropped because the
    // topology no longer lists it, as seeds are at start, is no trouble).
    const fastRefresh = (cl: ClusterClient, lost: RedisClient | undefined): void => {
      if (stopping) return;
      const key = lost ? `${lost.options.host}:${lost.options.port}` : '';
      if (!cl.slots.some((nodes) => nodes?.includes(key))) return;
      fastUntilMs = Date.now() + FAST_SLOTS_REFRESH_FOR_MS;
      fastTimer ??= setTimeout(fastTick, FAST_SLOTS_REFRESH_MS).unref();
    };
    // A primary failed over (or the topology changed): writes acknowledged just before may be
    // lost with it (asynchronous replication), so entries are rewritten at their next registration.
    cluster.on('-node', (lost: RedisClient | undefined) => {
      hooks.onPrimaryLost();
      fastRefresh(cluster, lost);
    });
    // The subscriber's own lost connections: ioredis re-reads its topology once, with back-off after that.
    subCluster.on('-node', (lost: RedisClient | undefined) => fastRefresh(subCluster, lost));
    cluster.on('node error', (err: Error) => hooks.log.debug({ err: err.message }, 'redis cluster node error'));
  }
  client.defineCommand('plRecord', { numberOfKeys: 1, lua: RECORD_LUA });
  client.defineCommand('plRecordMany', { lua: RECORD_MANY_LUA });
  client.defineCommand('plLimit', { numberOfKeys: 1, lua: LIMIT_LUA });
  client.defineCommand('plMarkStale', { numberOfKeys: 1, lua: MARK_STALE_LUA });
  return {
    client,
    sub,
    stop() {
      stopping = true;
      if (fastTimer) clearTimeout(fastTimer);
      fastTimer = null;
    },
  };
}
