/**
 * The server's TLS side: takes a client's connection request (S203), looks the device up (S204),
 * notifies it over UDP (packet 205, repeated until it answers so a lost datagram costs one
 * retry interval, not the whole request), takes the device's TLS connection (S206), hands it
 * the sealed request with the client's observed address, and relays the device's verdict (S207)
 * back to the client. The server never sees the access secret: the request is sealed end to end.
 *
 * Several nodes (Redis backend, see redis-registry.ts): the device's NAT lets in notifications
 * only from the node it registered with, so a request for a device held by another node is routed
 * there (pub/sub) and that node sends the notification. The request waits in Redis too, so the
 * device may attach at any node; the node it attaches at forwards the request and sends the
 * device's verdict back to the node holding the client (node-routing.ts). The request ID is in
 * every log line on every node. Without Redis a node serves the devices registered with it and says
 * what it cannot. The device's side of the exchange is device-exchange.ts.
 */
import { identityName } from '../protocol/identity-name.js';
import { endThenDestroy } from '../common/listen.js';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import { BROKER_COUNTERS, type BrokerCounter } from './broker-counters.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { serveRelayLeg, type RelayLegContext } from './relay-leg.js';
import type { StatusValue } from '../protocol/status.js';
import { PendingRequests } from './pending-requests.js';
import { createConnectionTracker, type ConnectionKind } from './connection-tracker.js';
import { createDeviceExchange } from './device-exchange.js';
import { createKeptDevices, KEPT_IDLE_MAX_MS, MAX_KEPT_DEVICES, type KeptDevices } from './kept-devices.js';
import { createCompanions } from './companions.js';
import { normalizeAddress } from '../protocol/address.js';
import { createNodeRouting } from './node-routing.js';
import type { RateLimiter } from './rate-limiter.js';
import type { AdmissionContext } from './request-admission.js';
import { createClientRequests } from './client-request.js';
import { CLIENT_CONNECTION_IDLE_MS, CLIENT_CONNECTION_MAX_REQUESTS, createClientConnections } from './client-connection.js';
import { drainAndClose } from './broker-drain.js';
import { listenBroker, type BrokerListener } from './broker-listener.js';
import type { RefuseReasonValue } from '../protocol/udp-packets.js';
import type { RedisRegistry } from './redis-registry.js';
import type { RegistrationEndpoint } from './registration-endpoint.js';
import type { Registry, RegistryBackend } from './registry.js';
import type { Relay } from './relay.js';
import type { RelayBridge } from './relay-bridge.js';

export { BROKER_COUNTERS, type BrokerCounter } from './broker-counters.js';
export type { Verdict } from './device-exchange.js';

export interface ConnectionBrokerOptions {
  readonly host: string;
  readonly port: number;
  readonly certPem: string;
  readonly keyPem: string;
  readonly masterKey: Buffer;
  readonly registry: Registry;
  readonly udp: RegistrationEndpoint;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly staleAfterMs: number;
  readonly attachTimeoutMs: number;
  readonly notifyRetryMs: number;
  readonly firstFrameTimeoutMs: number;
  /** A TLS handshake not done by then is dropped (Node's default is 120 s). */
  readonly handshakeTimeoutMs: number;
  /** Connections in the handshake or before their first frame, together; past it new ones are dropped at once. */
  readonly maxUnidentifiedConnections: number;
  readonly maxPendingPerDevice: number;
  /** A client's connection waits this long for its next request (client-connection.ts); 0: one request each. */
  readonly clientIdleMs?: number;
  readonly relay: Relay;
  /** The shared list (Redis) when this is one node of several; default: `registry`. */
  readonly backend?: RegistryBackend;
  /** Set with the Redis backend: requests waiting in Redis, messages between nodes. */
  readonly cluster?: RedisRegistry;
  /** With Redis: relayed sessions whose client joined at another node. */
  readonly relayBridge?: RelayBridge;
  /** Connection requests per client source address and per target equipment ID. */
  readonly sourceLimiter?: RateLimiter;
  /** Checked before the device is woken, charged when it attaches (P9). */
  readonly targetLimiter?: RateLimiter;
  /** Requests the device refused (its wake proof failed), per source (P9). */
  readonly authFailureLimiter?: RateLimiter;
  /** The operator's deny list (deny-list.ts): requests for a denied device get DEVICE_DENIED; a denied generation cannot attach. */
  readonly denied?: (equipmentId: string, generation?: number) => boolean;
  /** Kept device connections (kept-devices.ts): at most `max` (0: none), each idle for at most `idleMs`. */
  readonly keptDevices?: { readonly max: number; readonly idleMs: number };
  /** Timings for metrics: server-side time to connect (request to verdict), notification round trip. */
  readonly onTiming?: (what: 'connect' | 'notifyRoundTrip', ms: number, status: StatusValue) => void;
}

export interface ConnectionBroker {
  start(): Promise<void>;
  /** A renewed certificate and key for new handshakes (connections already open keep theirs). */
  setCertificate(certPem: string, keyPem: string): void;
  /** Stop taking connections; with graceMs, let requests in flight finish for up to that long. */
  stop(graceMs?: number): Promise<void>;
  /** Requests being served now (client conversations and device attaches). */
  readonly inFlight: number;
  /** Idle kept device connections (kept-devices.ts). */
  readonly keptDevices: number;
  /** Open connections on the TLS listener, by kind. */
  readonly open: Readonly<Record<ConnectionKind, number>>;
  address(): { address: string; port: number };
  /** The device refused request `requestId` (a UDP REFUSE, P9): end it at once. */
  refused(equipmentId: string, requestId: Buffer, reason: RefuseReasonValue): void;
  readonly counters: Counters<BrokerCounter>;
}

export function createConnectionBroker(options: ConnectionBrokerOptions): ConnectionBroker {
  const { registry, udp, clock, logger, masterKey, cluster } = options;
  const backend = options.backend ?? registry;
  const counters = new Counters(BROKER_COUNTERS);
  const pending = new PendingRequests();
  const tracker = createConnectionTracker({ maxUnidentified: options.maxUnidentifiedConnections });
  const companions = createCompanions(clock);
  // Kept device connections (kept-devices.ts): a request wakes an idle one instead of notifying over UDP.
  let kept: KeptDevices | undefined;
  const { exchange, deviceAttached, proofValid } = createDeviceExchange({
    masterKey,
    attachTimeoutMs: options.attachTimeoutMs,
    companions,
    keep: (channel, device) => (kept ? kept.offer(channel, device) : channel.close()),
  });
  /** The attach proof verifies under the named generation's key, and that generation is not denied. */
  const deviceProofValid = (
    socket: TLSSocket,
    a: { equipmentId: string; generation?: number; requestId: Buffer; proof: Buffer },
  ): boolean =>
    !options.denied?.(a.equipmentId, a.generation ?? 0) &&
    proofValid(socket, identityName(a.equipmentId, a.generation), a.requestId, a.proof);
  /** The port: each connection's first byte sends it to TLS or to a plain relay leg (broker-listener.ts). */
  let listener: BrokerListener | null = null;
  let draining = false;
  let inFlight = 0;
  let idle: (() => void) | null = null;
  const track = async <T>(work: Promise<T>): Promise<T> => {
    inFlight++;
    try {
      return await work;
    } finally {
      if (--inFlight === 0) idle?.();
    }
  };

  const admissionContext: AdmissionContext = {
    registry,
    backend,
    pending,
    counters,
    clock,
    staleAfterMs: options.staleAfterMs,
    maxPendingPerDevice: options.maxPendingPerDevice,
    sourceLimiter: options.sourceLimiter,
    targetLimiter: options.targetLimiter,
    authFailureLimiter: options.authFailureLimiter,
    denied: options.denied,
  };

  const routing = cluster
    ? createNodeRouting({
        cluster,
        registry,
        udp,
        counters,
        logger,
        proofValid: (socket, attach) => deviceProofValid(socket, attach),
        deviceAttached,
        exchange,
        ...(options.onTiming ? { onTiming: options.onTiming } : {}),
        ...(options.relayBridge ? { okVerdict: options.relayBridge.expect } : {}),
      })
    : null;

  kept = createKeptDevices({
    maxKept: options.keptDevices?.max ?? MAX_KEPT_DEVICES,
    maxIdleMs: options.keptDevices?.idleMs ?? KEPT_IDLE_MAX_MS,
    attachTimeoutMs: options.attachTimeoutMs,
    counters,
    logger,
    clock,
    onAttach: (channel, socket, attach) => serveDevice(channel, socket, attach),
    denied: options.denied,
  });

  const requests = createClientRequests({
    kept,
    admission: admissionContext,
    logger,
    counters,
    udp,
    pending,
    cluster,
    routing,
    exchange,
    relay: options.relay,
    relayBridge: options.relayBridge,
    targetLimiter: options.targetLimiter,
    authFailureLimiter: options.authFailureLimiter,
    onTiming: options.onTiming,
    notifyRetryMs: options.notifyRetryMs,
    attachTimeoutMs: options.attachTimeoutMs,
    draining: () => draining,
  });

  const clientConnections = createClientConnections({
    requests,
    counters,
    clock,
    idleMs: options.clientIdleMs ?? CLIENT_CONNECTION_IDLE_MS,
    maxRequests: CLIENT_CONNECTION_MAX_REQUESTS,
    track,
    draining: () => draining,
    releaseRelay: (requestId, channel) => void options.relay.release(requestId, channel),
  });

  async function onSecure(socket: TLSSocket): Promise<void> {
    tracker.secured(socket);
    // Half-open from here on (relayed sessions pass a half-close on), not during the handshake.
    socket.allowHalfOpen = true;
    // The server's `noDelay` option does not reach TLS sockets (measured: the forwarded request
    // waited 42 ms behind the device's delayed ACK): set it on each.
    socket.setNoDelay(true);
    counters.inc(socket.isSessionReused() ? 'tlsResumed' : 'tlsFull');
    socket.on('error', () => undefined); // reported through the channel
    // allowHalfOpen is for relayed sessions (relay.ts passes a half-close on). Anyone else who
    // half-closes has nothing more to say: close our side too, instead of sitting in CLOSE_WAIT.
    socket.once('end', () => {
      if (tracker.kindOf(socket) !== 'relay') endThenDestroy(socket);
    });
    const channel = new FrameChannel(socket);
    channel.send({ type: FrameType.HELLO, serverTimeMs: clock.now() });
    let first: Frame;
    try {
      first = await channel.next(options.firstFrameTimeoutMs);
    } catch {
      counters.inc('badFirstFrame');
      socket.destroy();
      return;
    }
    if (first.type === FrameType.CONNECT_REQUEST) {
      tracker.identified(socket, 'client');
      counters.inc('clientConnections');
      await clientConnections.serve(channel, socket, first);
    } else if (first.type === FrameType.DEVICE_ATTACH) {
      tracker.identified(socket, 'device');
      counters.inc('deviceAttachConnections');
      await track(serveDevice(channel, socket, first));
    } else if (first.type === FrameType.CLIENT_COMPANION || first.type === FrameType.DEVICE_COMPANION) {
      // Seen once, then closed: only its source address and port matter (companions.ts).
      tracker.identified(socket, first.type === FrameType.DEVICE_COMPANION ? 'device' : 'client');
      const seen = { address: normalizeAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
      if (first.type === FrameType.CLIENT_COMPANION) companions.client(first.clientNonce, seen);
      else if (deviceProofValid(socket, first)) companions.device(first.requestId, seen);
      else counters.inc('attachRejected');
      endThenDestroy(socket);
    } else if (first.type === FrameType.RELAY_JOIN_CLIENT) {
      counters.inc('relayClientJoins');
      tracker.identified(socket, 'relay');
      options.relay.join('client', first.requestId, first.joinToken, { channel, socket });
    } else if (first.type === FrameType.RELAY_JOIN_DEVICE) {
      tracker.identified(socket, 'relay');
      if (deviceProofValid(socket, first)) {
        // The client may have joined at another node (the one that offered the relay).
        if (!options.relay.has(first.requestId) && options.relayBridge) {
          socket.pause();
          if (await options.relayBridge.bridge({ channel, socket }, first.equipmentId, first.requestId, first.generation)) return;
        }
        options.relay.join('device', first.requestId, first.equipmentId, { channel, socket });
      } else {
        counters.inc('attachRejected');
        socket.destroy();
      }
    } else {
      counters.inc('badFirstFrame');
      socket.destroy();
    }
  }

  const relayLeg = (socket: Socket): RelayLegContext => ({
    relay: options.relay,
    ...(options.relayBridge ? { relayBridge: options.relayBridge } : {}),
    masterKey,
    ...(options.denied ? { denied: options.denied } : {}),
    joinTimeoutMs: options.firstFrameTimeoutMs,
    counters,
    identified: () => tracker.identified(socket, 'relay'),
    logger,
  });

  async function serveDevice(
    channel: FrameChannel,
    socket: TLSSocket,
    attach: Extract<Frame, { type: typeof FrameType.DEVICE_ATTACH }>,
  ): Promise<void> {
    const p = pending.peek(attach.requestId);
    if (p) {
      if (p.equipmentId === attach.equipmentId && deviceProofValid(socket, attach)) {
        pending.take(attach.requestId);
        deviceAttached(channel, socket, attach);
        p.attach(channel);
        return;
      }
    } else if (routing) {
      await routing.serveAttach(channel, socket, attach);
      return;
    }
    counters.inc('attachRejected');
    logger.info({ equipmentId: attach.equipmentId }, 'device attach rejected (unknown request or bad proof)');
    socket.destroy();
  }

  return {
    counters,
    setCertificate(certPem, keyPem) {
      if (!listener) throw new Error('not started');
      listener.setCertificate(certPem, keyPem);
    },
    async start() {
      listener = await listenBroker({
        certPem: options.certPem,
        keyPem: options.keyPem,
        port: options.port,
        host: options.host,
        handshakeTimeoutMs: options.handshakeTimeoutMs,
        plainLegs: options.relay.plainLegs,
        tracker,
        counters,
        logger,
        onSecure: (sock) => void onSecure(sock),
        onPlainLeg: (raw) => void serveRelayLeg(raw, relayLeg(raw)),
      });
    },
    get inFlight() {
      return inFlight;
    },
    refused(equipmentId, requestId, reason) {
      const p = pending.peek(requestId);
      if (p && p.equipmentId === equipmentId) {
        pending.take(requestId);
        p.refused(reason);
        return;
      }
      // Notified here for a request another node holds: that node answers its client.
      routing?.refused(requestId.toString('hex'), reason);
    },
    async stop(graceMs = 0) {
      const l = listener;
      listener = null;
      if (!l) return;
      l.stopTickets();
      const s = l.front;
      draining = true;
      kept?.close();
      clientConnections.closeIdle();
      // While draining the listener stays open: devices must still attach for the requests in
      // flight; new client requests get SERVER_DEGRADED ("shutting down") instead.
      await drainAndClose(s, graceMs, {
        logger,
        relay: options.relay,
        tracker,
        inFlight: () => inFlight,
        onIdle: (wake) => (idle = wake),
        answerWaiting: () => requests.answerWaiting(),
      });
    },
    get open() {
      return tracker.counts();
    },
    get keptDevices() {
      return kept?.size ?? 0;
    },
    address() {
      const a = listener?.front.address();
      if (!a || typeof a === 'string') throw new Error('not started');
      return { address: a.address, port: a.port };
    },
  };
}
