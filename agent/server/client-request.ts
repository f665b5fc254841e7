/**
 * One client's connection request at the server, as named steps: receive (S203) → admit and look up
 * (S204, request-admission.ts) → share it with the other nodes (Redis) → notify and wait for the
 * device (S205 to S206, device-wait.ts) → the device's verdict (S207, here or from another node) →
 * answer the client: the relay offer, the path candidates, the verdict.
 */
import { randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Counters } from '../common/counters.js';
import { lazyChild } from '../common/lazy-child.js';
import { formatEndpoint, normalizeAddress, type Endpoint } from '../protocol/address.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { CANDIDATES_MAX, CandidateKind, FrameType, type Frame } from '../protocol/frames.js';
import { Status, STATUS_TEXT, type StatusValue } from '../protocol/status.js';
import { RENDEZVOUS_ALPN } from '../protocol/constants.js';
import { RefuseReason } from '../protocol/udp-packets.js';
import type { BrokerCounter } from './broker-counters.js';
import type { Verdict } from './device-exchange.js';
import type { DeviceExchange } from './device-exchange.js';
import { waitForDevice, type Attached, type DeviceWaitContext } from './device-wait.js';
import type { NodeRouting } from './node-routing.js';
import type { RateLimiter } from './rate-limiter.js';
import type { RedisRegistry } from './redis-registry.js';
import type { Relay } from './relay.js';
import type { RelayBridge } from './relay-bridge.js';
import { admitRequest, type AdmissionContext } from './request-admission.js';

/** What the client is told when the relay is not offered (the request itself is accepted). */
const RELAY_REFUSAL_TEXT = {
  per_device: 'this device holds its share of relay sessions (relay.max_sessions_per_device)',
  per_source: 'your address holds its share of relay sessions (relay.max_sessions_per_source)',
  full: 'the relay is full',
} as const;

export const SHUTTING_DOWN = 'this server node is shutting down; try again (another node will answer)';

type ConnectRequest = Extract<Frame, { type: typeof FrameType.CONNECT_REQUEST }>;

export interface ClientRequestContext extends Omit<DeviceWaitContext, 'waitingForDevice'> {
  readonly admission: AdmissionContext;
  readonly logger: Logger;
  readonly counters: Counters<BrokerCounter>;
  readonly cluster: RedisRegistry | undefined;
  readonly routing: NodeRouting | null;
  readonly exchange: DeviceExchange['exchange'];
  readonly relay: Relay;
  readonly relayBridge: RelayBridge | undefined;
  readonly targetLimiter: RateLimiter | undefined;
  readonly authFailureLimiter: RateLimiter | undefined;
  readonly onTiming: ((what: 'connect' | 'notifyRoundTrip', ms: number, status: StatusValue) => void) | undefined;
  readonly draining: () => boolean;
}

export interface ClientRequests {
  /**
   * One request, answered when it resolves (or its client is gone); the caller closes the connection.
   * `kept`: the connection stays open after the answer (its client may release a relay offer on it).
   */
  serve(client: FrameChannel, socket: TLSSocket, req: ConnectRequest, kept: boolean): Promise<void>;
  /** Answer every request still waiting for its device (the server is shutting down); how many there were. */
  answerWaiting(): number;
}

/** One request in progress: who asked, its IDs and log, and how to answer it. */
interface InProgress {
  readonly client: FrameChannel;
  readonly socket: TLSSocket;
  readonly req: ConnectRequest;
  readonly requestId: Buffer;
  readonly hex: string;
  readonly clientEndpoint: Endpoint;
  /** The connection stays open after the answer (client-connection.ts). */
  readonly kept: boolean;
  readonly log: Logger;
  readonly done: (status: StatusValue, detail?: string) => void;
}

export function createClientRequests(ctx: ClientRequestContext): ClientRequests {
  const { counters, cluster } = ctx;
  /** Requests still waiting for their device when the grace period ends get an answer, not just a FIN. */
  const waitingForDevice = new Set<() => void>();

  async function serve(client: FrameChannel, socket: TLSSocket, req: ConnectRequest, kept: boolean): Promise<void> {
    // The connection may carry more requests (client-connection.ts): what a request hangs on it
    // (device-wait.ts waits for its close) goes with the request.
    const before = new Set(socket.listeners('close'));
    try {
      await serveOne(client, socket, req, kept);
    } finally {
      for (const l of socket.listeners('close')) if (!before.has(l)) socket.off('close', l as () => void);
    }
  }

  async function serveOne(client: FrameChannel, socket: TLSSocket, req: ConnectRequest, kept: boolean): Promise<void> {
    counters.inc('requests');
    const r = receive(client, socket, req, kept);
    if (ctx.draining()) {
      counters.inc('shuttingDown');
      return r.done(Status.SERVER_DEGRADED, SHUTTING_DOWN);
    }
    const admission = await admitRequest(ctx.admission, req.equipmentId, r.clientEndpoint.address, r.log);
    if (!admission.admitted) return r.done(admission.status, admission.detail);
    const { source, entry, mappings, shared } = admission;
    const owner = cluster && entry.node && entry.node !== cluster.nodeId ? entry.node : null;
    r.log.info(
      { mapping: `${entry.address}:${entry.port}`, ...(owner ? { deviceNode: owner } : {}) },
      'S204 device found in the equipment list',
    );
    if (shared && cluster && !(await share(r, owner))) return;

    const notifiedAtMs = Date.now();
    const wait = waitForDevice(
      { ...ctx, waitingForDevice },
      {
        requestId: r.requestId,
        hex: r.hex,
        equipmentId: req.equipmentId,
        wake: req.wake,
        source,
        entry,
        mappings,
        owner,
        socket,
        log: r.log,
      },
    );
    const got = await wait.attached;
    let verdict: Verdict | null;
    try {
      verdict = await verdictOf(r, got, { source, owner, shared, notifiedAtMs, remoteVerdict: wait.remoteVerdict });
    } finally {
      ctx.routing?.stopWaiting(r.hex);
    }
    if (verdict) answer(r, verdict);
  }

  /** S203: the request's ID, its log, and the one way it is answered. */
  function receive(client: FrameChannel, socket: TLSSocket, req: ConnectRequest, kept: boolean): InProgress {
    const startedMs = performance.now();
    const requestId = randomBytes(16);
    const hex = requestId.toString('hex');
    const clientEndpoint = { address: normalizeAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    const log = lazyChild(ctx.logger, { requestId: hex.slice(0, 12), equipmentId: req.equipmentId });
    log.info({ client: formatEndpoint(clientEndpoint), advertisedPort: req.advertisedPort }, 'S203 connection request received');
    const done = (status: StatusValue, detail?: string): void => {
      ctx.onTiming?.('connect', performance.now() - startedMs, status);
      // The connection stays open for the client's next request (client-connection.ts closes it).
      client.send({ type: FrameType.CONNECT_RESULT, status, detail: detail ?? STATUS_TEXT[status] });
    };
    return { client, socket, req, requestId, hex, clientEndpoint, kept, log, done };
  }

  /**
   * So the device may attach at any node, the request waits in Redis as well as here. False when
   * the request was answered: the device is at another node, which cannot be reached without Redis.
   */
  async function share(r: InProgress, owner: string | null): Promise<boolean> {
    try {
      await cluster!.putPending(
        r.hex,
        {
          equipmentId: r.req.equipmentId,
          clientNode: cluster!.nodeId,
          clientAddress: r.clientEndpoint.address,
          clientPort: r.clientEndpoint.port,
          advertisedPort: r.req.advertisedPort,
          sealedRequest: r.req.sealedRequest,
          notifiedAtMs: Date.now(),
        },
        ctx.attachTimeoutMs,
      );
    } catch (err) {
      if (owner) {
        counters.inc('registryUnavailable');
        r.log.warn({ err: (err as Error).message }, 'cannot route the request to the node holding the device (Redis unreachable)');
        r.done(
          Status.SERVER_DEGRADED,
          `the device is registered at another server node, which this node cannot reach now; try again shortly`,
        );
        return false;
      }
      r.log.warn({ err: (err as Error).message }, 'Redis unreachable: the request waits at this node only');
    }
    return true;
  }

  /**
   * S206 to S207: how the wait ended, to the device's verdict: the exchange with a device attached
   * here, or the verdict the node it attached at sends. Null when the request is answered already
   * (or its client is gone).
   */
  async function verdictOf(
    r: InProgress,
    got: Attached,
    w: { source: string; owner: string | null; shared: boolean; notifiedAtMs: number; remoteVerdict: Promise<Verdict> },
  ): Promise<Verdict | null> {
    if (got === null || got.kind === 'shutdown' || got.kind === 'refused') {
      endUnattached(r, got, w.source);
      return null;
    }
    // A request the device serves: now it counts against the device's limit.
    ctx.targetLimiter?.take(r.req.equipmentId);
    if (got.kind === 'gone') {
      counters.inc('nodeUnavailable');
      r.log.warn({ deviceNode: w.owner }, 'the node holding the device is not running');
      r.done(
        Status.SERVER_DEGRADED,
        'the server node the device registered with is not running; the device re-registers with another node within its interval; try again shortly',
      );
      return null;
    }
    if (got.kind === 'local') {
      ctx.onTiming?.('notifyRoundTrip', Date.now() - w.notifiedAtMs, Status.OK);
      if (cluster && w.shared) void cluster.claimPending(r.hex).catch(() => undefined);
      r.log.info('S206 device connected over TLS; forwarding the request');
      return ctx.exchange(got.device, r.requestId, r.clientEndpoint, r.req.advertisedPort, r.req.sealedRequest, r.log);
    }
    r.log.info({ attachedAt: got.node }, 'S206 device connected to another node, which forwards the request');
    return remoteVerdictOf(r, w.remoteVerdict);
  }

  /** The device never attached: no answer in time (or the client left), the server is stopping, or it refused the wake proof (P9). */
  function endUnattached(r: InProgress, got: Extract<Attached, null | { kind: 'shutdown' | 'refused' }>, source: string): void {
    if (got === null) {
      if (r.socket.destroyed) return;
      counters.inc('noAnswer');
      r.log.info('device did not connect in time');
      return r.done(Status.DEVICE_NO_ANSWER);
    }
    if (got.kind === 'shutdown') {
      counters.inc('shuttingDown');
      r.log.info('grace period over before the device attached');
      return r.done(Status.SERVER_DEGRADED, SHUTTING_DOWN);
    }
    counters.inc('refusedWake');
    r.log.info({ reason: got.reason }, 'device refused the request before connecting: its wake proof failed');
    if (got.reason === RefuseReason.STALE)
      return r.done(Status.REQUEST_EXPIRED, 'the device refused the request before connecting: it is not fresh (check the clock)');
    if (got.reason === RefuseReason.REPLAYED)
      return r.done(Status.REQUEST_REPLAYED, 'the device refused the request before connecting: it was seen before');
    if (got.reason === RefuseReason.REVOKED)
      return r.done(Status.ACCESS_REVOKED, "the device refused the request before connecting: its owner took this client's access away");
    // Only a wrong password counts against the source (P9).
    ctx.authFailureLimiter?.take(source);
    r.done(Status.AUTH_FAILED, 'the device refused the request before connecting: wrong password');
  }

  /** The verdict from the node the device attached at; DEVICE_NO_ANSWER if it does not come, or the client leaves. */
  function remoteVerdictOf(r: InProgress, remoteVerdict: Promise<Verdict>): Promise<Verdict> {
    const timer = new Promise<Verdict>((resolve) => {
      const t = setTimeout(() => resolve({ status: Status.DEVICE_NO_ANSWER }), ctx.attachTimeoutMs + 1000);
      // The client gone, nobody waits for the verdict: end the request (it counts as in flight).
      r.socket.once('close', () => {
        clearTimeout(t);
        resolve({ status: Status.DEVICE_NO_ANSWER });
      });
      void remoteVerdict.then(() => clearTimeout(t));
    });
    return Promise.race([remoteVerdict, timer]);
  }

  /** S207 to the client; with an ok verdict first the relay offer and the path candidates. */
  function answer(r: InProgress, verdict: Verdict): void {
    let detail = verdict.detail;
    if (verdict.status === Status.OK) {
      counters.inc('connected');
      // Should the device's direct dial fail, both sides may meet at the relay for this request,
      // unless the device or the client's source holds its share of the relay already (P14).
      // With the device's plan, a client that knows plans joins only when the device will be there,
      // and releases the offer over this connection when another path won first: so only a
      // connection that stays open after the answer gets the plan (RENDEZVOUS_ALPN).
      const plan = verdict.relayInMs !== undefined && r.kept && r.socket.alpnProtocol === RENDEZVOUS_ALPN ? verdict.relayInMs : undefined;
      const offer = ctx.relay.offer(r.requestId, r.req.equipmentId, r.clientEndpoint.address, plan === undefined ? undefined : r.client);
      if (offer.ok) {
        ctx.relayBridge?.offered(r.hex);
        // The token goes to the client only, over this connection; the NOTIFY never carries it.
        r.client.send({ type: FrameType.RELAY_OFFER, requestId: r.requestId, joinToken: offer.joinToken });
        if (plan !== undefined) r.client.send({ type: FrameType.RELAY_PLAN, requestId: r.requestId, relayInMs: plan });
      } else {
        detail = `${STATUS_TEXT[Status.OK]}; no relay offered: ${RELAY_REFUSAL_TEXT[offer.reason]}`;
      }
      r.client.send({
        type: FrameType.CANDIDATES,
        candidates: [
          ...(verdict.candidates ?? []).slice(0, CANDIDATES_MAX - 1),
          { kind: CandidateKind.OBSERVED, endpoint: r.clientEndpoint },
        ],
      });
    } else if (verdict.status === Status.DEVICE_NO_ANSWER) counters.inc('noAnswer');
    else counters.inc('refusedByDevice');
    r.log.info({ status: verdict.status }, 'S207 device verdict relayed to the client');
    r.done(verdict.status, detail);
  }

  return {
    serve,
    answerWaiting() {
      const n = waitingForDevice.size;
      for (const answerNow of waitingForDevice) answerNow();
      return n;
    },
  };
}
