/**
 * The rendezvous server (patent: server apparatus 101): the UDP registration endpoint, the TLS
 * connection broker and the equipment list, composed. Also sweeps entries of devices that have
 * stopped registering.
 *
 * One node of several when `redis` is given: the equipment list, waiting requests and messages
 * between nodes go through Redis (redis-registry.ts); the node keeps its own devices in its local
 * list as well, to serve them while Redis is away. Optional: a metrics and health listener
 * (metrics.ts), rate limits (rate-limiter.ts). `stop(graceMs)` drains: no new requests, those in
 * flight finish (up to graceMs), then everything closes.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.js';
import { systemTimers, type Timers } from '../common/timers.js';
import { silentLogger } from '../common/logger.js';
import { rejectUnknownKeys, requireOption } from '../common/options.js';
import {
  DEVICE_ATTACH_TIMEOUT_MS,
  DEVICE_FORGET_AFTER_MS,
  DEVICE_STALE_AFTER_MS,
  NOTIFY_RETRY_MS,
  REGISTER_CLOCK_WINDOW_MS,
  TLS_HANDSHAKE_TIMEOUT_MS,
} from '../protocol/constants.js';
import { createConnectionBroker, type ConnectionBroker } from './connection-broker.js';
import { KEPT_IDLE_MAX_MS, MAX_KEPT_DEVICES } from './kept-devices.js';
import { MAX_UNIDENTIFIED_CONNECTIONS } from './connection-tracker.js';
import { CLIENT_CONNECTION_IDLE_MS } from './client-connection.js';
import { createRegistrationEndpoint, type RegistrationEndpoint } from './registration-endpoint.js';
import { createMetricsListener, type MetricsListener } from './metrics.js';
import { createRateLimiter, createSharedRateLimiter, type RateLimit, type RateLimiter } from './rate-limiter.js';
import { createRelayBridge } from './relay-bridge.js';
import { createRedisRegistry, type RedisRegistry } from './redis-registry.js';
import { createMemoryRegistry, type Registry, type RegistryBackend } from './registry.js';
import { createProbeEndpoint, PROBE_NONCES_MAX } from './probe-responder.js';
import { ReplayCache } from '../common/replay-cache.js';
import { createDenyList } from './deny-list.js';
import {
  createRelay,
  RELAY_BYTES_PER_SECOND,
  RELAY_JOIN_TIMEOUT_MS,
  RELAY_MAX_DURATION_MS,
  RELAY_IDLE_TIMEOUT_MS,
  RELAY_LIMIT_KEYS,
  RELAY_MAX_SESSIONS,
  RELAY_MAX_SESSIONS_PER_DEVICE,
  RELAY_MAX_SESSIONS_PER_SOURCE,
  type Relay,
  type RelayLimits,
} from './relay.js';

export const SWEEP_INTERVAL_MS = 60_000;
export const SHUTDOWN_GRACE_MS = 10_000;
/** Requests waiting for one device at once (a stranger's holds a slot for one round trip, P9). */
export const MAX_PENDING_PER_DEVICE = 32;

/**
 * Default limits. Registrations: generous per source address, because thousands of devices can sit
 * behind one carrier-grade NAT address. Connection requests: a client retrying is fine, a script
 * waking a device endlessly is not. The per-device limit is charged only for requests the device
 * accepted to serve (its wake proof verified, P9), so strangers cannot use it up; a source whose
 * requests the device refused runs into its own limit of failed authentications.
 */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  registrationsPerSource: Object.freeze({ perSecond: 1000, burst: 2000 }),
  requestsPerSource: Object.freeze({ perSecond: 2, burst: 60 }),
  requestsPerDevice: Object.freeze({ perSecond: 1, burst: 30 }),
  authFailuresPerSource: Object.freeze({ perSecond: 10 / 60, burst: 10 }),
});

export interface ServerLimits {
  readonly registrationsPerSource: RateLimit;
  readonly requestsPerSource: RateLimit;
  /** Charged when the device attaches (P9). */
  readonly requestsPerDevice: RateLimit;
  /** Requests the device refused (wrong password), per source (P9). */
  readonly authFailuresPerSource: RateLimit;
}

export interface RedisOptions {
  /** One Redis; or `clusterNodes`, seed nodes of a Redis Cluster ("host:port"). */
  readonly url?: string;
  readonly clusterNodes?: readonly string[];
  /** Write on change: an unchanged entry is rewritten this long after its last write (default 60 s). */
  readonly refreshAfterMs?: number;
  /** Prefix of every key and channel (several fleets on one Redis). */
  readonly keyPrefix?: string;
  readonly commandTimeoutMs?: number;
  /** Where the other nodes reach this node's TLS port, for relayed sessions across nodes ("host:port"). */
  readonly tlsAddress?: string;
  /** With clusterNodes: the cluster's ACL user and password (with url they go in the URL). */
  readonly username?: string;
  readonly password?: string;
}

export interface RendezvousServerOptions {
  readonly udpHost?: string;
  readonly udpPort?: number;
  readonly tlsHost?: string;
  readonly tlsPort?: number;
  readonly certPem: string;
  readonly keyPem: string;
  readonly masterKey: Buffer;
  readonly registry?: Registry;
  readonly clock?: Clock;
  /** Timers of the relay's sessions (join, duration, idle); default: the real clock. */
  readonly timers?: Timers;
  readonly logger?: Logger;
  readonly staleAfterMs?: number;
  readonly forgetAfterMs?: number;
  readonly clockWindowMs?: number;
  readonly attachTimeoutMs?: number;
  readonly notifyRetryMs?: number;
  readonly maxPendingPerDevice?: number;
  /** Kept device connections (kept-devices.ts): at most `max` at once (0: none), each idle for at most `idleMs`. */
  readonly keptDevices?: { readonly max: number; readonly idleMs: number };
  /** A client's TLS connection waits this long for its next request (default CLIENT_CONNECTION_IDLE_MS; 0: one request each). */
  readonly clientIdleMs?: number;
  readonly relay?: Partial<RelayLimits>;
  /** This node's name among several (in Redis and in logs); default hostname/udp-port. */
  readonly nodeId?: string;
  /** Share the registry with other nodes through Redis; default: in memory, this node only. */
  readonly redis?: RedisOptions;
  readonly limits?: Partial<ServerLimits>;
  /** Metrics and health listener (off unless given). */
  readonly metrics?: { readonly host: string; readonly port: number };
  readonly shutdownGraceMs?: number;
  /** The TLS handshake's deadline, and then the first frame's (default TLS_HANDSHAKE_TIMEOUT_MS each). */
  readonly handshakeTimeoutMs?: number;
  /** Connections in the TLS handshake or before their first frame, together (default MAX_UNIDENTIFIED_CONNECTIONS). */
  readonly maxUnidentifiedConnections?: number;
  /** A second UDP port that answers probes (diagnose's NAT mapping test); absent or 0 = none. */
  readonly probePort?: number;
  /** The operator's deny list file (deny-list.ts); with `redis`, the shared list is enforced too. */
  readonly denyFile?: string;
  /** How often the deny list is re-read (default DENY_POLL_MS). */
  readonly denyPollMs?: number;
}

const OPTION_KEYS = [
  'udpHost',
  'udpPort',
  'tlsHost',
  'tlsPort',
  'certPem',
  'keyPem',
  'masterKey',
  'registry',
  'clock',
  'timers',
  'logger',
  'staleAfterMs',
  'forgetAfterMs',
  'clockWindowMs',
  'attachTimeoutMs',
  'notifyRetryMs',
  'maxPendingPerDevice',
  'keptDevices',
  'clientIdleMs',
  'relay',
  'nodeId',
  'redis',
  'limits',
  'metrics',
  'shutdownGraceMs',
  'probePort',
  'handshakeTimeoutMs',
  'maxUnidentifiedConnections',
  'denyFile',
  'denyPollMs',
] as const;

export interface RendezvousServer {
  start(): Promise<void>;
  /** Drain for up to graceMs (default: the shutdownGraceMs option, 0 unless set), then close. */
  stop(graceMs?: number): Promise<void>;
  udpAddress(): { address: string; port: number };
  tlsAddress(): { address: string; port: number };
  metricsAddress(): { address: string; port: number } | null;
  readonly nodeId: string;
  /** This node's own list (with Redis: the devices registered at this node). */
  readonly registry: Registry;
  /** The list requests are looked up in: `registry`, or the shared Redis one. */
  readonly backend: RegistryBackend;
  readonly draining: boolean;
  readonly registration: RegistrationEndpoint;
  readonly broker: ConnectionBroker;
  readonly relay: Relay;
  /** Serve a renewed certificate from now on (`peerlink-server` does it on SIGHUP). */
  setCertificate(certPem: string, keyPem: string): void;
}

export function createRendezvousServer(input: RendezvousServerOptions): RendezvousServer {
  rejectUnknownKeys('rendezvous server options', input, OPTION_KEYS);
  if (input.relay) rejectUnknownKeys('rendezvous server options: relay', input.relay, RELAY_LIMIT_KEYS);
  const opts = Object.freeze({
    udpHost: input.udpHost ?? '0.0.0.0',
    udpPort: input.udpPort ?? 0,
    tlsHost: input.tlsHost ?? '0.0.0.0',
    tlsPort: input.tlsPort ?? 0,
    certPem: requireOption('rendezvous server options', 'certPem', input.certPem),
    keyPem: requireOption('rendezvous server options', 'keyPem', input.keyPem),
    masterKey: requireOption('rendezvous server options', 'masterKey', input.masterKey),
    registry: input.registry ?? createMemoryRegistry(),
    clock: input.clock ?? systemClock,
    timers: input.timers ?? systemTimers,
    logger: input.logger ?? silentLogger(),
    staleAfterMs: input.staleAfterMs ?? DEVICE_STALE_AFTER_MS,
    forgetAfterMs: input.forgetAfterMs ?? DEVICE_FORGET_AFTER_MS,
    clockWindowMs: input.clockWindowMs ?? REGISTER_CLOCK_WINDOW_MS,
    attachTimeoutMs: input.attachTimeoutMs ?? DEVICE_ATTACH_TIMEOUT_MS,
    notifyRetryMs: input.notifyRetryMs ?? NOTIFY_RETRY_MS,
    maxPendingPerDevice: input.maxPendingPerDevice ?? MAX_PENDING_PER_DEVICE,
    keptDevices: Object.freeze({ max: input.keptDevices?.max ?? MAX_KEPT_DEVICES, idleMs: input.keptDevices?.idleMs ?? KEPT_IDLE_MAX_MS }),
    clientIdleMs: input.clientIdleMs ?? CLIENT_CONNECTION_IDLE_MS,
    relay: Object.freeze({
      maxSessions: input.relay?.maxSessions ?? RELAY_MAX_SESSIONS,
      bytesPerSecond: input.relay?.bytesPerSecond ?? RELAY_BYTES_PER_SECOND,
      maxDurationMs: input.relay?.maxDurationMs ?? RELAY_MAX_DURATION_MS,
      joinTimeoutMs: input.relay?.joinTimeoutMs ?? RELAY_JOIN_TIMEOUT_MS,
      maxSessionsPerDevice: input.relay?.maxSessionsPerDevice ?? RELAY_MAX_SESSIONS_PER_DEVICE,
      maxSessionsPerSource: input.relay?.maxSessionsPerSource ?? RELAY_MAX_SESSIONS_PER_SOURCE,
      idleTimeoutMs: input.relay?.idleTimeoutMs ?? RELAY_IDLE_TIMEOUT_MS,
      plainLegs: input.relay?.plainLegs ?? true,
    }),
    limits: Object.freeze({
      registrationsPerSource: input.limits?.registrationsPerSource ?? DEFAULT_LIMITS.registrationsPerSource,
      requestsPerSource: input.limits?.requestsPerSource ?? DEFAULT_LIMITS.requestsPerSource,
      requestsPerDevice: input.limits?.requestsPerDevice ?? DEFAULT_LIMITS.requestsPerDevice,
      authFailuresPerSource: input.limits?.authFailuresPerSource ?? DEFAULT_LIMITS.authFailuresPerSource,
    }),
    shutdownGraceMs: input.shutdownGraceMs ?? 0,
    handshakeTimeoutMs: input.handshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
    maxUnidentifiedConnections: input.maxUnidentifiedConnections ?? MAX_UNIDENTIFIED_CONNECTIONS,
  });
  const nodeId = input.nodeId ?? `${hostname()}/${opts.udpPort}`;
  const cluster: RedisRegistry | undefined = input.redis
    ? createRedisRegistry({
        ...(input.redis.url !== undefined ? { url: input.redis.url } : {}),
        ...(input.redis.clusterNodes !== undefined ? { clusterNodes: input.redis.clusterNodes } : {}),
        ...(input.redis.refreshAfterMs !== undefined ? { refreshAfterMs: input.redis.refreshAfterMs } : {}),
        nodeId,
        keyPrefix: input.redis.keyPrefix ?? 'pl:',
        forgetAfterMs: opts.forgetAfterMs,
        logger: opts.logger,
        staleMark: { registry: opts.registry, staleAfterMs: opts.staleAfterMs },
        ...(input.redis.commandTimeoutMs !== undefined ? { commandTimeoutMs: input.redis.commandTimeoutMs } : {}),
        ...(input.redis.username !== undefined ? { username: input.redis.username } : {}),
        ...(input.redis.password !== undefined ? { password: input.redis.password } : {}),
      })
    : undefined;
  const backend: RegistryBackend = cluster ?? opts.registry;
  const fleetWide = (name: string, local: RateLimiter): RateLimiter => (cluster ? createSharedRateLimiter(name, local, cluster) : local);
  const logger = cluster ? opts.logger.child({ node: nodeId }) : opts.logger;
  let metrics: MetricsListener | null = null;
  let draining = false;
  // When Redis comes back (restarted, maybe empty), this node writes its own devices there again
  // at once instead of waiting up to one registration interval for each device to re-register.
  let redisWasUp = false;
  cluster?.onState((up) => {
    if (up && redisWasUp) void republish(cluster);
    if (up) redisWasUp = true;
  });
  async function republish(c: RedisRegistry): Promise<void> {
    let written = 0;
    let batch: Promise<unknown>[] = [];
    for (const [id, e] of opts.registry.entries()) {
      // The compare-and-set keeps a newer entry (the device may have moved to another node since).
      batch.push(
        c.record(id, { ...e, node: nodeId }).then(
          () => written++,
          () => undefined,
        ),
      );
      if (batch.length >= 1000) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);
    logger.info({ devices: written }, "redis back: this node's devices are in the shared registry again");
  }
  const denyList = createDenyList({
    file: input.denyFile,
    // Read through the registry's own client, so one Redis and a Cluster alike (deny-list.ts).
    redis: cluster ? { client: () => cluster.client, keyPrefix: input.redis?.keyPrefix ?? 'pl:' } : undefined,
    logger,
    timers: opts.timers,
    ...(input.denyPollMs !== undefined ? { pollMs: input.denyPollMs } : {}),
  });
  const denied = (id: string, generation?: number): boolean => denyList.has(id, generation);
  // One memory of probe nonces for both UDP ports: a probe replayed to the other port is known too (P6).
  const probeNonces = new ReplayCache(PROBE_NONCES_MAX);
  const registration = createRegistrationEndpoint({
    host: opts.udpHost,
    port: opts.udpPort,
    masterKey: opts.masterKey,
    registry: opts.registry,
    clock: opts.clock,
    logger: opts.logger,
    clockWindowMs: opts.clockWindowMs,
    backend,
    ...(cluster
      ? {
          sharedWrites: cluster,
          onTakenOver: (equipmentId: string, fromNode: string, timestampMs: number) =>
            void cluster.send(fromNode, { kind: 'taken', equipmentId, byNode: nodeId, timestampMs }).catch(() => undefined),
        }
      : {}),
    sourceLimiter: createRateLimiter(opts.limits.registrationsPerSource, opts.clock),
    probeNonces,
    denied,
    // With the probe port on, both ports tell a client its mapping (issue 15, nat/client-mapping.ts).
    clientProbes: Boolean(input.probePort),
    // The device refused a request's wake proof (P9): the broker ends the request at once.
    onRefuse: (equipmentId, requestId, reason) => broker.refused(equipmentId, requestId, reason),
  });
  const relay = createRelay(opts.relay, logger, opts.timers);
  const relayBridge = cluster
    ? createRelayBridge({
        cluster,
        certPem: opts.certPem,
        masterKey: opts.masterKey,
        joinTimeoutMs: opts.relay.joinTimeoutMs,
        logger,
        tlsAddress: () => {
          if (input.redis?.tlsAddress) return input.redis.tlsAddress;
          const a = broker.address();
          const host = a.address === '0.0.0.0' || a.address === '::' ? hostname() : a.address;
          return `${host.includes(':') ? `[${host}]` : host}:${a.port}`;
        },
      })
    : undefined;
  const probe = input.probePort
    ? createProbeEndpoint({
        host: opts.udpHost,
        port: input.probePort,
        masterKey: opts.masterKey,
        clock: opts.clock,
        logger: opts.logger,
        clockWindowMs: opts.clockWindowMs,
        // Its own bucket per source, at the registration port's rate (P6: every UDP port is limited).
        sourceLimiter: createRateLimiter(opts.limits.registrationsPerSource, opts.clock),
        seen: probeNonces,
        denied,
      })
    : null;
  const broker = createConnectionBroker({
    host: opts.tlsHost,
    port: opts.tlsPort,
    certPem: opts.certPem,
    keyPem: opts.keyPem,
    masterKey: opts.masterKey,
    registry: opts.registry,
    backend,
    ...(cluster ? { cluster } : {}),
    ...(relayBridge ? { relayBridge } : {}),
    // Fleet-wide through Redis with several nodes (each node's own bucket while Redis is away).
    sourceLimiter: fleetWide('rs', createRateLimiter(opts.limits.requestsPerSource, opts.clock)),
    targetLimiter: fleetWide('rd', createRateLimiter(opts.limits.requestsPerDevice, opts.clock)),
    authFailureLimiter: fleetWide('af', createRateLimiter(opts.limits.authFailuresPerSource, opts.clock)),
    denied,
    onTiming: (what, ms, status) => metrics?.observe(what, ms, status),
    udp: registration,
    clock: opts.clock,
    logger,
    staleAfterMs: opts.staleAfterMs,
    attachTimeoutMs: opts.attachTimeoutMs,
    notifyRetryMs: opts.notifyRetryMs,
    firstFrameTimeoutMs: opts.handshakeTimeoutMs,
    handshakeTimeoutMs: opts.handshakeTimeoutMs,
    maxUnidentifiedConnections: opts.maxUnidentifiedConnections,
    maxPendingPerDevice: opts.maxPendingPerDevice,
    keptDevices: opts.keptDevices,
    clientIdleMs: opts.clientIdleMs,
    relay,
  });
  let sweeper: NodeJS.Timeout | undefined;

  return {
    registry: opts.registry,
    registration,
    broker,
    setCertificate: (certPem, keyPem) => broker.setCertificate(certPem, keyPem),
    relay,
    backend,
    nodeId,
    get draining() {
      return draining;
    },
    metricsAddress: () => metrics?.address() ?? null,
    async start() {
      if (input.metrics) {
        metrics = createMetricsListener({
          host: input.metrics.host,
          port: input.metrics.port,
          logger,
          source: {
            registration: registration.counters,
            broker: broker.counters,
            relay,
            localDevices: () => opts.registry.devices,
            backend: backend.kind,
            registryUp: () => cluster?.up ?? true,
            draining: () => draining,
            limits: opts.limits,
            nodeId,
            relayBridged: () => relayBridge?.bridged ?? 0,
            malformedFromRedis: () => ({
              message: cluster?.malformed.get('message') ?? 0,
              pending: cluster?.malformed.get('pending') ?? 0,
              offer: relayBridge?.malformedOffers ?? 0,
            }),
            openConnections: () => broker.open,
            deniedDevices: () => denyList.size,
          },
        });
        await metrics.start();
      }
      await cluster?.start();
      try {
        // Before the UDP port opens, so no denied device registers in between; a bad deny file stops the start.
        await denyList.start();
        await registration.start();
        await probe?.start();
        await broker.start();
      } catch (err) {
        await registration.stop();
        await denyList.stop();
        await cluster?.stop();
        await metrics?.stop();
        await probe?.stop();
        throw err;
      }
      sweeper = setInterval(
        () => {
          const gone = opts.registry.sweep(opts.clock.now() - opts.forgetAfterMs);
          if (gone > 0) opts.logger.info({ removed: gone }, 'forgot devices that stopped registering');
        },
        Math.min(SWEEP_INTERVAL_MS, opts.forgetAfterMs),
      );
      sweeper.unref();
    },
    async stop(graceMs = opts.shutdownGraceMs) {
      draining = true;
      clearInterval(sweeper);
      // The broker drains first: its requests in flight still need UDP (notifications) and Redis.
      await broker.stop(graceMs);
      await registration.stop();
      await denyList.stop();
      await cluster?.stop();
      await metrics?.stop();
      await probe?.stop();
    },
    udpAddress: () => registration.address(),
    tlsAddress: () => broker.address(),
  };
}
