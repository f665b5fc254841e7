/**
 * The Redis backend: the equipment list shared by every server node, the connection requests
 * waiting for their device (so the device may attach at any node), and the messages between
 * nodes (Redis pub/sub), over one existing distributed engine instead of a home-made cluster.
 *
 * Key design (Redis Cluster-compatible: every command touches one key, hash tags pin it):
 *   <prefix>{d:<equipment ID>}   hash a=address p=port s=last seen t=last registration timestamp
 *                                n=node; PEXPIRE forget_after_ms, so it goes by itself when the
 *                                device stops registering
 *   <prefix>{r:<request ID hex>} string (JSON) of a request waiting for its device; PX attach timeout
 *   <prefix>{o:<request ID hex>} string (JSON) of a relay offer (relay-bridge.ts, through putValue); PX join timeout
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
import type { Redis as RedisClient } from 'ioredis';
import type { Logger } from 'pino';
import { Counters } from '../common/counters.js';
import { decodeNodeMessage, decodePendingRecord, droppedField, encodeNodeMessage, encodePendingRecord, type NodeMessage, type PendingRecord } from './node-messages.js';
import type { RecordResult, RegistryBackend, RegistryEntry } from './registry.js';

export type { NodeMessage, PendingRecord } from './node-messages.js';

/** What this node read from Redis and dropped because it did not decode (node-messages.ts). */
export const MALFORMED_KINDS = ['message', 'pending'] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];

export interface RedisRegistryOptions {
  readonly url: string;
  readonly nodeId: string;
  readonly keyPrefix: string;
  /** Entries expire this long after the last registration. */
  readonly forgetAfterMs: number;
  readonly logger: Logger;
  /** A command that takes longer fails (ms); the node then serves from its local list. */
  readonly commandTimeoutMs?: number;
}

export interface RedisRegistry extends RegistryBackend {
  readonly kind: 'redis';
  readonly nodeId: string;
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
  /** Connect (does not fail when Redis is down: the node starts degraded and keeps retrying). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The underlying client once started, for benchmarks and tests (INFO memory). */
  readonly client: RedisClient;
}

const RECORD_LUA = `
local t = redis.call('HGET', KEYS[1], 't')
if t and tonumber(t) >= tonumber(ARGV[4]) then return '0' end
local prev = redis.call('HMGET', KEYS[1], 'a', 'p', 's', 't', 'n')
redis.call('HSET', KEYS[1], 'a', ARGV[1], 'p', ARGV[2], 's', ARGV[3], 't', ARGV[4], 'n', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if not prev[1] then return '1' end
return '1|' .. prev[1] .. '|' .. prev[2] .. '|' .. prev[3] .. '|' .. prev[4] .. '|' .. (prev[5] or '')
`;

const COMMAND_TIMEOUT_MS = 1000;
const RECONNECT_MAX_MS = 2000;

type WithRecord = RedisClient & { plRecord(key: string, a: string, p: number, s: number, t: number, n: string, ttl: number): Promise<string> };

/** Synchronous to build; ioredis is imported and the connections opened by `start()`. */
export function createRedisRegistry(o: RedisRegistryOptions): RedisRegistry {
  const common = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: o.commandTimeoutMs ?? COMMAND_TIMEOUT_MS,
    connectTimeout: 2000,
    retryStrategy: (times: number) => Math.min(100 * times, RECONNECT_MAX_MS),
  };
  let clientOrNull: WithRecord | null = null;
  let subOrNull: RedisClient | null = null;
  const c = (): WithRecord => {
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

  const setUp = (v: boolean, why: string): void => {
    if (v === up) return;
    up = v;
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
      const [a, p, s, t, n] = await c().hmget(deviceKey(id), 'a', 'p', 's', 't', 'n');
      if (a === null || a === undefined) return undefined;
      return { address: a, port: Number(p), lastSeenMs: Number(s), lastTimestampMs: Number(t), node: n ?? '' };
    },
    async record(id, e): Promise<RecordResult> {
      const r = await c().plRecord(deviceKey(id), e.address, e.port, e.lastSeenMs, e.lastTimestampMs, e.node ?? o.nodeId, o.forgetAfterMs);
      if (r === '0') return { outcome: 'replayed' };
      if (r === '1') return { outcome: 'accepted', moved: true, previous: undefined };
      const [, a, p, s, t, n] = r.split('|');
      const previous = { address: a!, port: Number(p), lastSeenMs: Number(s), lastTimestampMs: Number(t), node: n ?? '' };
      return { outcome: 'accepted', moved: previous.address !== e.address || previous.port !== e.port, previous };
    },
    sweep: () => 0,
    async send(node, m) {
      return c().publish(`${o.keyPrefix}n:${node}`, encodeNodeMessage(m));
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
        log.debug({ requestId: hex.slice(0, 12), field: droppedField(err), err: (err as Error).message }, 'dropped a malformed pending request read from Redis');
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
    async start() {
      const { Redis } = await import('ioredis');
      const client = new Redis(o.url, common) as WithRecord;
      client.defineCommand('plRecord', { numberOfKeys: 1, lua: RECORD_LUA });
      const sub = new Redis(o.url, { ...common, enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
      client.on('ready', () => setUp(true, 'ready'));
      client.on('close', () => setUp(false, 'connection closed'));
      client.on('error', (err: Error) => log.debug({ err: err.message }, 'redis error'));
      sub.on('error', (err: Error) => log.debug({ err: err.message }, 'redis subscriber error'));
      sub.on('message', onNodeMessage);
      clientOrNull = client;
      subOrNull = sub;
      // Neither connect may fail the start: a node comes up degraded and the clients keep retrying.
      await Promise.all([
        client.connect().catch((err: Error) => log.error({ err: err.message }, 'redis unreachable at start; retrying')),
        sub.connect().catch(() => undefined),
      ]);
      // Queued until the subscriber connection is up; ioredis resubscribes after every reconnect.
      void sub.subscribe(channel).catch((err: Error) => log.warn({ err: err.message }, 'subscribe failed'));
    },
    async stop() {
      stopping = true;
      const client = clientOrNull;
      const sub = subOrNull;
      clientOrNull = null;
      subOrNull = null;
      await Promise.all([client?.quit().catch(() => client.disconnect()), sub?.quit().catch(() => sub.disconnect())]);
    },
  };
  return reg;
}
