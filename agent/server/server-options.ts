/**
 * The rendezvous server's options (server.ts): what a caller may set, the defaults, and the check
 * made once at the boundary (unknown keys rejected), then frozen.
 */
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
import { KEPT_IDLE_MAX_MS, MAX_KEPT_DEVICES } from './kept-devices.js';
import { MAX_UNIDENTIFIED_CONNECTIONS } from './connection-tracker.js';
import { CLIENT_CONNECTION_IDLE_MS } from './client-connection.js';
import type { RateLimit } from './rate-limiter.js';
import { createMemoryRegistry, type Registry } from './registry.js';
import {
  RELAY_BYTES_PER_SECOND,
  RELAY_JOIN_TIMEOUT_MS,
  RELAY_MAX_DURATION_MS,
  RELAY_IDLE_TIMEOUT_MS,
  RELAY_LIMIT_KEYS,
  RELAY_MAX_SESSIONS,
  RELAY_MAX_SESSIONS_PER_DEVICE,
  RELAY_MAX_SESSIONS_PER_SOURCE,
  type RelayLimits,
} from './relay.js';

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

/** The server's options, checked (unknown keys rejected) and defaulted once, frozen. */
export function resolveServerOptions(input: RendezvousServerOptions) {
  rejectUnknownKeys('rendezvous server options', input, OPTION_KEYS);
  if (input.relay) rejectUnknownKeys('rendezvous server options: relay', input.relay, RELAY_LIMIT_KEYS);
  return Object.freeze({
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
}
