/**
 * The rendezvous server (patent: server apparatus 101): the UDP registration endpoint, the TLS
 * connection broker and the equipment list, composed. Also sweeps entries of devices that have
 * stopped registering.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.js';
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
import { createRegistrationEndpoint, type RegistrationEndpoint } from './registration-endpoint.js';
import { createMemoryRegistry, type Registry } from './registry.js';
import { createProbeEndpoint } from './probe-responder.js';
import {
  createRelay,
  RELAY_BYTES_PER_SECOND,
  RELAY_JOIN_TIMEOUT_MS,
  RELAY_MAX_DURATION_MS,
  RELAY_MAX_SESSIONS,
  type Relay,
  type RelayLimits,
} from './relay.js';

export const SWEEP_INTERVAL_MS = 60_000;

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
  readonly logger?: Logger;
  readonly staleAfterMs?: number;
  readonly forgetAfterMs?: number;
  readonly clockWindowMs?: number;
  readonly attachTimeoutMs?: number;
  readonly notifyRetryMs?: number;
  readonly maxPendingPerDevice?: number;
  readonly relay?: Partial<RelayLimits>;
  /** A second UDP port that answers probes (diagnose's NAT mapping test); absent or 0 = none. */
  readonly probePort?: number;
}

const OPTION_KEYS = [
  'udpHost', 'udpPort', 'tlsHost', 'tlsPort', 'certPem', 'keyPem', 'masterKey', 'registry', 'clock', 'logger',
  'staleAfterMs', 'forgetAfterMs', 'clockWindowMs', 'attachTimeoutMs', 'notifyRetryMs', 'maxPendingPerDevice', 'relay', 'probePort',
] as const;

export interface RendezvousServer {
  start(): Promise<void>;
  stop(): Promise<void>;
  udpAddress(): { address: string; port: number };
  tlsAddress(): { address: string; port: number };
  readonly registry: Registry;
  readonly registration: RegistrationEndpoint;
  readonly broker: ConnectionBroker;
  readonly relay: Relay;
}

export function createRendezvousServer(input: RendezvousServerOptions): RendezvousServer {
  rejectUnknownKeys('rendezvous server options', input, OPTION_KEYS);
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
    logger: input.logger ?? silentLogger(),
    staleAfterMs: input.staleAfterMs ?? DEVICE_STALE_AFTER_MS,
    forgetAfterMs: input.forgetAfterMs ?? DEVICE_FORGET_AFTER_MS,
    clockWindowMs: input.clockWindowMs ?? REGISTER_CLOCK_WINDOW_MS,
    attachTimeoutMs: input.attachTimeoutMs ?? DEVICE_ATTACH_TIMEOUT_MS,
    notifyRetryMs: input.notifyRetryMs ?? NOTIFY_RETRY_MS,
    maxPendingPerDevice: input.maxPendingPerDevice ?? 8,
    relay: Object.freeze({
      maxSessions: input.relay?.maxSessions ?? RELAY_MAX_SESSIONS,
      bytesPerSecond: input.relay?.bytesPerSecond ?? RELAY_BYTES_PER_SECOND,
      maxDurationMs: input.relay?.maxDurationMs ?? RELAY_MAX_DURATION_MS,
      joinTimeoutMs: input.relay?.joinTimeoutMs ?? RELAY_JOIN_TIMEOUT_MS,
    }),
  });
  const registration = createRegistrationEndpoint({
    host: opts.udpHost,
    port: opts.udpPort,
    masterKey: opts.masterKey,
    registry: opts.registry,
    clock: opts.clock,
    logger: opts.logger,
    clockWindowMs: opts.clockWindowMs,
  });
  const relay = createRelay(opts.relay, opts.logger);
  const probe = input.probePort
    ? createProbeEndpoint({ host: opts.udpHost, port: input.probePort, masterKey: opts.masterKey, clock: opts.clock, logger: opts.logger, clockWindowMs: opts.clockWindowMs })
    : null;
  const broker = createConnectionBroker({
    host: opts.tlsHost,
    port: opts.tlsPort,
    certPem: opts.certPem,
    keyPem: opts.keyPem,
    masterKey: opts.masterKey,
    registry: opts.registry,
    udp: registration,
    clock: opts.clock,
    logger: opts.logger,
    staleAfterMs: opts.staleAfterMs,
    attachTimeoutMs: opts.attachTimeoutMs,
    notifyRetryMs: opts.notifyRetryMs,
    firstFrameTimeoutMs: TLS_HANDSHAKE_TIMEOUT_MS,
    maxPendingPerDevice: opts.maxPendingPerDevice,
    relay,
  });
  let sweeper: NodeJS.Timeout | undefined;

  return {
    registry: opts.registry,
    registration,
    broker,
    relay,
    async start() {
      await registration.start();
      try {
        await probe?.start();
        await broker.start();
      } catch (err) {
        await Promise.all([registration.stop(), probe?.stop()]);
        throw err;
      }
      sweeper = setInterval(() => {
        const gone = opts.registry.sweep(opts.clock.now() - opts.forgetAfterMs);
        if (gone > 0) opts.logger.info({ removed: gone }, 'forgot devices that stopped registering');
      }, Math.min(SWEEP_INTERVAL_MS, opts.forgetAfterMs));
      sweeper.unref();
    },
    async stop() {
      clearInterval(sweeper);
      await Promise.all([broker.stop(), registration.stop(), probe?.stop()]);
    },
    udpAddress: () => registration.address(),
    tlsAddress: () => broker.address(),
  };
}
