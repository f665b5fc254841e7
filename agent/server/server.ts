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
import { createConnectionBroker, type ConnectionBroker } from './connection-broker.js';
import { createRegistrationEndpoint, type RegistrationEndpoint } from './registration-endpoint.js';
import { createMetricsListener, type MetricsListener } from './metrics.js';
import { createRateLimiter, createSharedRateLimiter, type RateLimiter } from './rate-limiter.js';
import { createRelayBridge } from './relay-bridge.js';
import { createRedisRegistry, type RedisRegistry } from './redis-registry.js';
import type { Registry, RegistryBackend } from './registry.js';
import { createProbeEndpoint, PROBE_NONCES_MAX } from './probe-responder.js';
import { ReplayCache } from '../common/replay-cache.js';
import { createDenyList } from './deny-list.js';
import { createRelay, type Relay } from './relay.js';

import { resolveServerOptions, type RendezvousServerOptions } from './server-options.js';

export {
  DEFAULT_LIMITS,
  MAX_PENDING_PER_DEVICE,
  type RedisOptions,
  type RendezvousServerOptions,
  type ServerLimits,
} from './server-options.js';

export const SWEEP_INTERVAL_MS = 60_000;
export const SHUTDOWN_GRACE_MS = 10_000;
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
  const opts = resolveServerOptions(input);
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
