/**
 * The server's TLS side: takes a client's connection request (S203), looks the device up (S204),
 * notifies it over UDP (packet 205, repeated until it answers so a lost datagram costs one
 * retry interval, not the whole request), takes the device's TLS connection (S206), hands it
 * the sealed request with the client's observed address, and relays the device's verdict (S207)
 * back to the client. The server never sees the access secret: the request is sealed end to end.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import { isPeerlinkError } from '../common/errors.js';
import { formatEndpoint, normalizeAddress } from '../protocol/address.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { CANDIDATES_MAX, CandidateKind, FrameType, type Candidate, type Frame } from '../protocol/frames.js';
import type { Endpoint } from '../protocol/address.js';
import { ATTACH_EXPORTER_LABEL, attachProof, deriveRegistrationKey, equalBytes, KEY_BYTES } from '../protocol/keys.js';
import { Status, STATUS_TEXT, type StatusValue } from '../protocol/status.js';
import { PendingRequests, type PendingRequest } from './pending-requests.js';
import { checkListenCandidates } from './candidate-check.js';
import type { RegistrationEndpoint } from './registration-endpoint.js';
import type { Registry } from './registry.js';
import type { Relay } from './relay.js';

export const BROKER_COUNTERS = [
  'requests',
  'connected',
  'unknownDevice',
  'staleDevice',
  'noAnswer',
  'refusedByDevice',
  'busy',
  'attachRejected',
  'badFirstFrame',
  'handshakeFailed',
] as const;
export type BrokerCounter = (typeof BROKER_COUNTERS)[number];

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
  readonly maxPendingPerDevice: number;
  readonly relay: Relay;
}

export interface ConnectionBroker {
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { address: string; port: number };
  readonly counters: Counters<BrokerCounter>;
}

export function createConnectionBroker(options: ConnectionBrokerOptions): ConnectionBroker {
  const { registry, udp, clock, logger, masterKey } = options;
  const counters = new Counters(BROKER_COUNTERS);
  const pending = new PendingRequests();
  const sockets = new Set<TLSSocket>();
  /** Where each attached device's TLS connection comes from (its NAT mapping for a hole punch). */
  const deviceSeenAt = new WeakMap<FrameChannel, Endpoint>();
  let server: Server | null = null;

  async function onSecure(socket: TLSSocket): Promise<void> {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined); // reported through the channel
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
    if (first.type === FrameType.CONNECT_REQUEST) await serveClient(channel, socket, first);
    else if (first.type === FrameType.DEVICE_ATTACH) serveDevice(channel, socket, first);
    else if (first.type === FrameType.RELAY_JOIN_CLIENT) options.relay.join('client', first.requestId, null, { channel, socket });
    else if (first.type === FrameType.RELAY_JOIN_DEVICE) {
      if (deviceProofValid(socket, first.equipmentId, first.requestId, first.proof)) {
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

  async function serveClient(
    client: FrameChannel,
    socket: TLSSocket,
    req: Extract<Frame, { type: typeof FrameType.CONNECT_REQUEST }>,
  ): Promise<void> {
    counters.inc('requests');
    const requestId = randomBytes(16);
    const clientEndpoint = { address: normalizeAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    const log = logger.child({ requestId: requestId.toString('hex').slice(0, 12), equipmentId: req.equipmentId });
    log.info({ client: formatEndpoint(clientEndpoint), advertisedPort: req.advertisedPort }, 'S203 connection request received');

    const entry = registry.get(req.equipmentId);
    if (!entry) {
      counters.inc('unknownDevice');
      log.info('S204 device not in the equipment list');
      return finish(client, Status.UNKNOWN_DEVICE);
    }
    const ageMs = clock.now() - entry.lastSeenMs;
    if (ageMs > options.staleAfterMs) {
      counters.inc('staleDevice');
      log.info({ ageMs }, 'S204 device entry is stale');
      return finish(client, Status.DEVICE_STALE, `${STATUS_TEXT[Status.DEVICE_STALE]}: last seen ${Math.round(ageMs / 1000)} s ago`);
    }
    if (pending.countFor(req.equipmentId) >= options.maxPendingPerDevice) {
      counters.inc('busy');
      return finish(client, Status.DEVICE_BUSY);
    }
    log.info({ mapping: `${entry.address}:${entry.port}` }, 'S204 device found in the equipment list');

    let device: FrameChannel | null = null;
    let notifyTimer: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    let entryInTable: PendingRequest | undefined;
    const attached = new Promise<FrameChannel | null>((resolve) => {
      const p = {
        requestId,
        equipmentId: req.equipmentId,
        attach: (ch: FrameChannel) => resolve(ch),
      };
      entryInTable = p;
      pending.add(p);
      const sendNotify = (): void => {
        if (udp.notify(req.equipmentId, requestId)) log.debug('S205 notification sent');
      };
      sendNotify();
      log.info('S205 notification sent to the device mapping');
      notifyTimer = setInterval(sendNotify, options.notifyRetryMs);
      deadline = setTimeout(() => resolve(null), options.attachTimeoutMs);
      socket.once('close', () => resolve(null));
    });
    try {
      device = await attached;
    } finally {
      clearInterval(notifyTimer);
      clearTimeout(deadline);
      if (entryInTable) pending.remove(entryInTable);
    }
    if (!device) {
      if (socket.destroyed) return;
      counters.inc('noAnswer');
      log.info('device did not connect in time');
      return finish(client, Status.DEVICE_NO_ANSWER);
    }
    log.info('S206 device connected over TLS; forwarding the request');
    const deviceEndpoint = deviceSeenAt.get(device);
    // Where the client's request came from: the device may punch towards it from its own attach port.
    device.send({
      type: FrameType.CANDIDATES,
      candidates: [
        { kind: CandidateKind.PUNCH, endpoint: clientEndpoint },
        ...(deviceEndpoint ? [{ kind: CandidateKind.OBSERVED, endpoint: deviceEndpoint }] : []),
      ],
    });
    device.send({
      type: FrameType.FORWARD_REQUEST,
      requestId,
      client: clientEndpoint,
      advertisedPort: req.advertisedPort,
      sealedRequest: req.sealedRequest,
    });
    let verdict: Frame;
    const listen: Candidate[] = [];
    try {
      verdict = await device.next(options.attachTimeoutMs);
      while (verdict.type === FrameType.CANDIDATES && listen.length < CANDIDATES_MAX) {
        listen.push(...checkListenCandidates(verdict.candidates, deviceEndpoint));
        verdict = await device.next(options.attachTimeoutMs);
      }
    } catch (err) {
      counters.inc('noAnswer');
      log.info({ err: isPeerlinkError(err) ? err.code : String(err) }, 'device gave no verdict');
      device.close();
      return finish(client, Status.DEVICE_NO_ANSWER);
    }
    device.close();
    if (verdict.type !== FrameType.DEVICE_VERDICT || !equalBytes(verdict.requestId, requestId)) {
      counters.inc('refusedByDevice');
      return finish(client, Status.INTERNAL, 'the device answered out of turn');
    }
    if (verdict.status === Status.OK) {
      counters.inc('connected');
      // Should the device's direct dial fail, both sides may meet at the relay for this request.
      options.relay.offer(requestId, req.equipmentId);
      client.send({ type: FrameType.RELAY_OFFER, requestId });
      client.send({
        type: FrameType.CANDIDATES,
        candidates: [
          ...(deviceEndpoint ? [{ kind: CandidateKind.PUNCH, endpoint: deviceEndpoint }] : []),
          ...listen.slice(0, CANDIDATES_MAX - 2),
          { kind: CandidateKind.OBSERVED, endpoint: clientEndpoint },
        ],
      });
    } else counters.inc('refusedByDevice');
    log.info({ status: verdict.status }, 'S207 device verdict relayed to the client');
    finish(client, verdict.status);
  }

  /** The device's proof for a request, bound to this TLS session (attach and relay join). */
  function deviceProofValid(socket: TLSSocket, equipmentId: string, requestId: Buffer, proof: Buffer): boolean {
    const key = deriveRegistrationKey(masterKey, equipmentId);
    const exporter = socket.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
    return equalBytes(attachProof(key, requestId, exporter), proof);
  }

  function serveDevice(
    channel: FrameChannel,
    socket: TLSSocket,
    attach: Extract<Frame, { type: typeof FrameType.DEVICE_ATTACH }>,
  ): void {
    const p = pending.peek(attach.requestId);
    const ok = p !== undefined && p.equipmentId === attach.equipmentId && deviceProofValid(socket, attach.equipmentId, attach.requestId, attach.proof);
    if (!ok || !p) {
      counters.inc('attachRejected');
      logger.info({ equipmentId: attach.equipmentId }, 'device attach rejected (unknown request or bad proof)');
      socket.destroy();
      return;
    }
    pending.take(attach.requestId);
    deviceSeenAt.set(channel, { address: normalizeAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 });
    p.attach(channel);
  }

  return {
    counters,
    async start() {
      // allowHalfOpen: a relayed end-to-end channel half-closes through these connections.
      const s = createServer({ cert: options.certPem, key: options.keyPem, minVersion: 'TLSv1.2', allowHalfOpen: true });
      s.on('secureConnection', (sock) => void onSecure(sock));
      s.on('tlsClientError', () => counters.inc('handshakeFailed'));
      s.on('error', (err) => logger.error({ err: err.message }, 'tls server error'));
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(options.port, options.host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      server = s;
    },
    async stop() {
      const s = server;
      server = null;
      if (!s) return;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      options.relay.stop();
      for (const sock of sockets) sock.destroy();
      await closed;
    },
    address() {
      const a = server?.address();
      if (!a || typeof a === 'string') throw new Error('not started');
      return { address: a.address, port: a.port };
    },
  };
}
