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
import { endThenDestroy, listenOn } from '../common/listen.js';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import { formatEndpoint, normalizeAddress } from '../protocol/address.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { CANDIDATES_MAX, CandidateKind, FrameType, type Candidate, type Frame } from '../protocol/frames.js';
import { Status, STATUS_TEXT, type StatusValue } from '../protocol/status.js';
import { PendingRequests, type PendingRequest } from './pending-requests.js';
import { createConnectionTracker, type ConnectionKind } from './connection-tracker.js';
import { createDeviceExchange } from './device-exchange.js';
import { createNodeRouting } from './node-routing.js';
import type { RateLimiter } from './rate-limiter.js';
import { admitRequest, type AdmissionContext } from './request-admission.js';
import { RefuseReason, type RefuseReasonValue } from '../protocol/udp-packets.js';
import type { RedisRegistry } from './redis-registry.js';
import type { RegistrationEndpoint } from './registration-endpoint.js';
import type { Registry, RegistryBackend } from './registry.js';
import type { Relay } from './relay.js';
import type { RelayBridge } from './relay-bridge.js';

/** What the client is told when the relay is not offered (the request itself is accepted). */
const RELAY_REFUSAL_TEXT = {
  per_device: 'this device holds its share of relay sessions (relay.max_sessions_per_device)',
  per_source: 'your address holds its share of relay sessions (relay.max_sessions_per_source)',
  full: 'the relay is full',
} as const;

export const BROKER_COUNTERS = [
  'requests',
  /** The device refused the request's wake proof (P9). */
  'refusedWake',
  'rateLimitedAuthFailures',
  'connected',
  'unknownDevice',
  'staleDevice',
  'noAnswer',
  'refusedByDevice',
  'busy',
  'attachRejected',
  'badFirstFrame',
  'handshakeFailed',
  'handshakeTimeout',
  'unidentifiedOverCap',
  'rateLimitedSource',
  'rateLimitedTarget',
  'registryUnavailable',
  'nodeUnavailable',
  'shuttingDown',
  'routedToNode',
  'notifiedForNode',
  'attachedForNode',
  /** Requests for a device on the operator's deny list (issue 19). */
  'denied',
] as const;
export type BrokerCounter = (typeof BROKER_COUNTERS)[number];

const SHUTTING_DOWN = 'this server node is shutting down; try again (another node will answer)';

/**
 * At shutdown, after the drain: how long peers get to close once the last answers are sent. Then
 * the sockets are destroyed; what is queued in the kernel still goes out (nothing unread: a FIN, not a reset).
 */
export const STOP_LAST_WORDS_MS = 500;

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
  /** The operator's deny list (deny-list.ts): requests for a denied device get DEVICE_DENIED. */
  readonly denied?: (equipmentId: string) => boolean;
  /** Timings for metrics: server-side time to connect (request to verdict), notification round trip. */
  readonly onTiming?: (what: 'connect' | 'notifyRoundTrip', ms: number, status: StatusValue) => void;
}

/** With an ok verdict, the device's path candidates for the client (hole punch, reverse port). */
export type Verdict = { readonly status: StatusValue; readonly detail?: string; readonly candidates?: readonly Candidate[] };

export interface ConnectionBroker {
  start(): Promise<void>;
  /** Stop taking connections; with graceMs, let requests in flight finish for up to that long. */
  stop(graceMs?: number): Promise<void>;
  /** Requests being served now (client conversations and device attaches). */
  readonly inFlight: number;
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
  const { exchange, deviceAttached, proofValid: deviceProofValid } = createDeviceExchange({ masterKey, attachTimeoutMs: options.attachTimeoutMs });
  let server: Server | null = null;
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
        proofValid: (socket, attach) => deviceProofValid(socket, attach.equipmentId, attach.requestId, attach.proof),
        deviceAttached,
        exchange,
        ...(options.onTiming ? { onTiming: options.onTiming } : {}),
      })
    : null;

  async function onSecure(socket: TLSSocket): Promise<void> {
    tracker.secured(socket);
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
      await track(serveClient(channel, socket, first));
    } else if (first.type === FrameType.DEVICE_ATTACH) {
      tracker.identified(socket, 'device');
      await track(serveDevice(channel, socket, first));
    } else if (first.type === FrameType.RELAY_JOIN_CLIENT) {
      tracker.identified(socket, 'relay');
      options.relay.join('client', first.requestId, first.joinToken, { channel, socket });
    } else if (first.type === FrameType.RELAY_JOIN_DEVICE) {
      tracker.identified(socket, 'relay');
      if (deviceProofValid(socket, first.equipmentId, first.requestId, first.proof)) {
        // The client may have joined at another node (the one that offered the relay).
        if (!options.relay.has(first.requestId) && options.relayBridge) {
          socket.pause();
          if (await options.relayBridge.bridge({ channel, socket }, first.equipmentId, first.requestId)) return;
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

  function finish(channel: FrameChannel, status: StatusValue, detail?: string): void {
    channel.send({ type: FrameType.CONNECT_RESULT, status, detail: detail ?? STATUS_TEXT[status] });
    channel.close();
  }

  type Attached =
    | { readonly kind: 'local'; readonly device: FrameChannel }
    | { readonly kind: 'remote'; readonly node: string }
    | { readonly kind: 'gone' }
    | { readonly kind: 'shutdown' }
    /** The device checked the wake proof and refused it (P9). */
    | { readonly kind: 'refused'; readonly reason: RefuseReasonValue }
    | null;
  /** Requests still waiting for their device when the grace period ends get an answer, not just a FIN. */
  const waitingForDevice = new Set<() => void>();

  async function serveClient(
    client: FrameChannel,
    socket: TLSSocket,
    req: Extract<Frame, { type: typeof FrameType.CONNECT_REQUEST }>,
  ): Promise<void> {
    counters.inc('requests');
    const startedMs = performance.now();
    const requestId = randomBytes(16);
    const hex = requestId.toString('hex');
    const clientEndpoint = { address: normalizeAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    const log = logger.child({ requestId: hex.slice(0, 12), equipmentId: req.equipmentId });
    log.info({ client: formatEndpoint(clientEndpoint), advertisedPort: req.advertisedPort }, 'S203 connection request received');
    const done = (status: StatusValue, detail?: string): void => {
      options.onTiming?.('connect', performance.now() - startedMs, status);
      finish(client, status, detail);
    };

    if (draining) {
      counters.inc('shuttingDown');
      return done(Status.SERVER_DEGRADED, SHUTTING_DOWN);
    }
    const admission = await admitRequest(admissionContext, req.equipmentId, clientEndpoint.address, log);
    if (!admission.admitted) return done(admission.status, admission.detail);
    const { source, entry, shared } = admission;
    const owner = cluster && entry.node && entry.node !== cluster.nodeId ? entry.node : null;
    log.info({ mapping: `${entry.address}:${entry.port}`, ...(owner ? { deviceNode: owner } : {}) }, 'S204 device found in the equipment list');

    if (shared && cluster) {
      // So the device may attach at any node, the request waits in Redis as well as here.
      try {
        await cluster.putPending(
          hex,
          {
            equipmentId: req.equipmentId,
            clientNode: cluster.nodeId,
            clientAddress: clientEndpoint.address,
            clientPort: clientEndpoint.port,
            advertisedPort: req.advertisedPort,
            sealedRequest: req.sealedRequest,
            notifiedAtMs: Date.now(),
          },
          options.attachTimeoutMs,
        );
      } catch (err) {
        if (owner) {
          counters.inc('registryUnavailable');
          log.warn({ err: (err as Error).message }, 'cannot route the request to the node holding the device (Redis unreachable)');
          return done(Status.SERVER_DEGRADED, `the device is registered at another server node, which this node cannot reach now; try again shortly`);
        }
        log.warn({ err: (err as Error).message }, 'Redis unreachable: the request waits at this node only');
      }
    }

    let notifyTimer: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    let entryInTable: PendingRequest | undefined;
    let onShutdown: (() => void) | undefined;
    let verdictFromNode: ((v: Verdict) => void) | undefined;
    const remoteVerdict = new Promise<Verdict>((resolve) => (verdictFromNode = resolve));
    const notifiedAtMs = Date.now();
    const attached = new Promise<Attached>((resolve) => {
      const p = {
        requestId,
        equipmentId: req.equipmentId,
        source,
        attach: (ch: FrameChannel) => resolve({ kind: 'local', device: ch }),
        refused: (reason: RefuseReasonValue) => resolve({ kind: 'refused', reason }),
      };
      entryInTable = p;
      pending.add(p);
      if (routing) {
        routing.waitFor(hex, (m) => {
          // Decoded and checked at the boundary (node-messages.ts): reason, status and candidates are valid.
          if (m.kind === 'attached') resolve({ kind: 'remote', node: m.byNode });
          else if (m.kind === 'refused') resolve({ kind: 'refused', reason: m.reason });
          else if (m.kind === 'verdict') verdictFromNode?.({ status: m.status, candidates: [...m.candidates] });
        });
      }
      const target = { address: entry.address, port: entry.port };
      const sendNotify = (): void => {
        if (!owner) {
          if (udp.notify(req.equipmentId, requestId, req.wake, target)) log.debug('S205 notification sent');
          return;
        }
        cluster!
          .send(owner, { kind: 'notify', requestId: hex, equipmentId: req.equipmentId, deviceAddress: entry.address, devicePort: entry.port, fromNode: cluster!.nodeId, wake: req.wake })
          .then((receivers) => {
            if (receivers === 0) resolve({ kind: 'gone' });
          })
          .catch((err: Error) => log.debug({ err: err.message }, 'routing the notification failed; retrying'));
      };
      sendNotify();
      if (owner) {
        counters.inc('routedToNode');
        log.info({ deviceNode: owner }, 'S205 request routed to the node holding the device, which notifies it');
      } else log.info('S205 notification sent to the device mapping');
      notifyTimer = setInterval(sendNotify, options.notifyRetryMs);
      deadline = setTimeout(() => resolve(null), options.attachTimeoutMs);
      socket.once('close', () => resolve(null));
      onShutdown = () => resolve({ kind: 'shutdown' });
      waitingForDevice.add(onShutdown);
    });
    let got: Attached;
    try {
      got = await attached;
    } finally {
      clearInterval(notifyTimer);
      clearTimeout(deadline);
      if (onShutdown) waitingForDevice.delete(onShutdown);
      if (entryInTable) pending.remove(entryInTable);
    }
    let verdict: Verdict;
    try {
      if (got === null) {
        if (socket.destroyed) return;
        counters.inc('noAnswer');
        log.info('device did not connect in time');
        return done(Status.DEVICE_NO_ANSWER);
      }
      if (got.kind === 'shutdown') {
        counters.inc('shuttingDown');
        log.info('grace period over before the device attached');
        return done(Status.SERVER_DEGRADED, SHUTTING_DOWN);
      }
      if (got.kind === 'refused') {
        counters.inc('refusedWake');
        log.info({ reason: got.reason }, 'device refused the request before connecting: its wake proof failed');
        if (got.reason === RefuseReason.STALE) return done(Status.REQUEST_EXPIRED, 'the device refused the request before connecting: it is not fresh (check the clock)');
        if (got.reason === RefuseReason.REPLAYED) return done(Status.REQUEST_REPLAYED, 'the device refused the request before connecting: it was seen before');
        if (got.reason === RefuseReason.REVOKED) return done(Status.ACCESS_REVOKED, "the device refused the request before connecting: its owner took this client's access away");
        // Only a wrong password counts against the source (P9).
        options.authFailureLimiter?.take(source);
        return done(Status.AUTH_FAILED, 'the device refused the request before connecting: wrong password');
      }
      // A request the device serves: now it counts against the device's limit.
      options.targetLimiter?.take(req.equipmentId);
      if (got.kind === 'gone') {
        counters.inc('nodeUnavailable');
        log.warn({ deviceNode: owner }, 'the node holding the device is not running');
        return done(
          Status.SERVER_DEGRADED,
          'the server node the device registered with is not running; the device re-registers with another node within its interval; try again shortly',
        );
      }
      if (got.kind === 'local') {
        options.onTiming?.('notifyRoundTrip', Date.now() - notifiedAtMs, Status.OK);
        if (cluster && shared) void cluster.claimPending(hex).catch(() => undefined);
        log.info('S206 device connected over TLS; forwarding the request');
        verdict = await exchange(got.device, requestId, clientEndpoint, req.advertisedPort, req.sealedRequest, log);
      } else {
        log.info({ attachedAt: got.node }, 'S206 device connected to another node, which forwards the request');
        const timer = new Promise<Verdict>((resolve) => {
          const t = setTimeout(() => resolve({ status: Status.DEVICE_NO_ANSWER }), options.attachTimeoutMs + 1000);
          // The client gone, nobody waits for the verdict: end the request (it counts as in flight).
          socket.once('close', () => {
            clearTimeout(t);
            resolve({ status: Status.DEVICE_NO_ANSWER });
          });
          void remoteVerdict.then(() => clearTimeout(t));
        });
        verdict = await Promise.race([remoteVerdict, timer]);
      }
    } finally {
      routing?.stopWaiting(hex);
    }
    let detail = verdict.detail;
    if (verdict.status === Status.OK) {
      counters.inc('connected');
      // Should the device's direct dial fail, both sides may meet at the relay for this request,
      // unless the device or the client's source holds its share of the relay already (P14).
      const offer = options.relay.offer(requestId, req.equipmentId, clientEndpoint.address);
      if (offer.ok) {
        options.relayBridge?.offered(hex);
        // The token goes to the client only, over this connection; the NOTIFY never carries it.
        client.send({ type: FrameType.RELAY_OFFER, requestId, joinToken: offer.joinToken });
      } else {
        detail = `${STATUS_TEXT[Status.OK]}; no relay offered: ${RELAY_REFUSAL_TEXT[offer.reason]}`;
      }
      client.send({
        type: FrameType.CANDIDATES,
        candidates: [...(verdict.candidates ?? []).slice(0, CANDIDATES_MAX - 1), { kind: CandidateKind.OBSERVED, endpoint: clientEndpoint }],
      });
    } else if (verdict.status === Status.DEVICE_NO_ANSWER) counters.inc('noAnswer');
    else counters.inc('refusedByDevice');
    log.info({ status: verdict.status }, 'S207 device verdict relayed to the client');
    done(verdict.status, detail);
  }

  async function serveDevice(
    channel: FrameChannel,
    socket: TLSSocket,
    attach: Extract<Frame, { type: typeof FrameType.DEVICE_ATTACH }>,
  ): Promise<void> {
    const p = pending.peek(attach.requestId);
    if (p) {
      if (p.equipmentId === attach.equipmentId && deviceProofValid(socket, attach.equipmentId, attach.requestId, attach.proof)) {
        pending.take(attach.requestId);
        deviceAttached(channel, socket);
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
    async start() {
      // allowHalfOpen: a relayed end-to-end channel half-closes through these connections.
      const s = createServer({
        cert: options.certPem,
        key: options.keyPem,
        minVersion: 'TLSv1.2',
        allowHalfOpen: true,
        handshakeTimeout: options.handshakeTimeoutMs,
      });
      s.on('connection', (raw: Socket) => {
        if (!tracker.accepted(raw)) counters.inc('unidentifiedOverCap');
      });
      s.on('secureConnection', (sock) => void onSecure(sock));
      // With a listener here Node leaves the failed socket open (also on ERR_TLS_HANDSHAKE_TIMEOUT,
      // where it would sit in CLOSE_WAIT for good once its peer gave up): destroy it.
      s.on('tlsClientError', (err: NodeJS.ErrnoException, sock: TLSSocket) => {
        counters.inc(err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshakeTimeout' : 'handshakeFailed');
        sock.destroy();
      });
      s.on('error', (err) => logger.error({ err: err.message }, 'tls server error'));
      await listenOn(s, options.port, options.host);
      server = s;
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
      const s = server;
      server = null;
      if (!s) return;
      draining = true;
      // While draining the listener stays open: devices must still attach for the requests in
      // flight; new client requests get SERVER_DEGRADED ("shutting down") instead.
      const busy = (): boolean => inFlight > 0 || options.relay.active > 0;
      if (graceMs > 0 && busy()) {
        logger.info({ inFlight, relaySessions: options.relay.active, graceMs }, 'draining: no new requests; finishing those in flight');
        const until = Date.now() + graceMs;
        while (busy() && Date.now() < until) {
          await new Promise<void>((r) => {
            idle = r;
            setTimeout(r, 100).unref();
          });
        }
        idle = null;
      }
      if (waitingForDevice.size > 0) {
        for (const answer of waitingForDevice) answer();
        await new Promise((r) => setImmediate(r)); // their CONNECT_RESULT is written before the FINs below
      }
      // One line for what the drain leaves behind (peers gone silent, half-closed, mid-handshake,
      // idle relay sessions): all of it is closed now, whatever the peers do.
      const open = tracker.counts();
      const left = Object.values(open).reduce((n, c) => n + c, 0);
      logger[busy() ? 'warn' : 'info']({ open, inFlight, relaySessions: options.relay.active }, 'closing the connections still open');
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      options.relay.stop();
      if (graceMs > 0 && left > 0) {
        // Let the last answers (CONNECT_RESULT) reach their clients before the sockets go. Only
        // secure connections can have any; those still in the handshake are destroyed below.
        tracker.endAll();
        const until = Date.now() + Math.min(graceMs, STOP_LAST_WORDS_MS);
        while (tracker.secureSize > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      }
      tracker.destroyAll();
      await closed;
    },
    get open() {
      return tracker.counts();
    },
    address() {
      const a = server?.address();
      if (!a || typeof a === 'string') throw new Error('not started');
      return { address: a.address, port: a.port };
    },
  };
}
