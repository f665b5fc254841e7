/**
 * The client library (patent: request issuance equipment 102).
 *
 *   const client = createClient({ server, caPem, equipmentId, password, service, accept });
 *   const tunnel = await client.open(signal);   // a Duplex to the device's service
 *
 * Each open(): S203 over TLS to the server (certificate checked against the CA, P5), with a
 * request sealed end to end under the access key; then wait for the device's direct TLS-PSK
 * connection (S208) on the peer listener. One client serves many tunnels (e.g. --listen mode); by
 * default open() makes one session with the device and later open()s are streams of it.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ErrorCodes, isPeerlinkError, PeerlinkError } from '../common/errors.js';
import { CANDIDATES_MAX, CandidateKind, FrameType, type Candidate } from '../protocol/frames.js';
import { RENDEZVOUS_ALPN } from '../protocol/constants.js';
import { deriveAccessKey, deriveRequestTagKey, NONCE_BYTES } from '../protocol/keys.js';
import { deriveWakeKey, makeWake } from '../protocol/wake.js';
import type { Endpoint } from '../protocol/address.js';
import type { Socket } from 'node:net';
import { openCompanion } from '../rendezvous/companion.js';
import { sealRequest } from '../protocol/request.js';
import { Status, STATUS_ERROR, STATUS_TEXT } from '../protocol/status.js';
import { createPeerListener, type PeerListener } from './peer-listener.js';
import { createRelayPlans } from './relay-plan.js';
import { createServerLink, KeptConnectionLost } from './server-link.js';
import { mapTcpPort, type PortMapping } from '../nat/port-mapping.js';
import { racePaths, type PathKind } from '../paths/path-race.js';
import { clientLanOffer, deviceLanTargets, lanPath } from './lan-candidates.js';
import { isLanAddress } from '../nat/lan-address.js';
import { hintsMayRush, PathHint } from '../paths/relay-hint.js';
import { createPathMemory } from '../paths/path-memory.js';
import { clientMappingFor } from '../nat/client-mapping.js';
import { createClientStreams } from './client-streams.js';
import {
  clientAttempts,
  describePath,
  familyOf,
  type AttemptContext,
  type ClientAttempt,
  type Expected,
  type RelayOfferFrame,
  type ServerAnswer,
} from './client-attempts.js';

export { SERVER_KEEP_IDLE_MS } from './server-link.js';
export { SESSION_IDLE_MS, type ClientOptions } from './client-options.js';
import { validate, type ClientOptions } from './client-options.js';

/** dial: the device dialled us (S208); punch: TCP simultaneous open; reverse: we dialled the device; relay: via the server. */
export type TunnelPath = PathKind;

export interface Tunnel {
  /** The end-to-end encrypted stream to the device's service (a TLS socket, or a stream of a session). */
  readonly stream: Duplex;
  readonly via: TunnelPath;
  /** How the connection was made, for people: e.g. "connected directly: device dialled 4.17.168.2:5000". */
  readonly path: string;
  readonly connectMs: number;
  /** A stream on a session that was already up (no rendezvous). */
  readonly reused?: boolean;
}

export interface OpenOptions {
  /**
   * A stream of the session is handed over once its CONNECT is sent, before the device's answer, so
   * the first bytes written travel with it (a round trip less: `--listen` uses it). A refusal then
   * destroys the stream with the error (e.g. SERVICE_REFUSED); the device discards what was sent.
   */
  readonly early?: boolean;
}

export interface Client {
  start(signal?: AbortSignal): Promise<void>;
  /** A tunnel to the service (default: the options' service); a stream of the live session unless sessionIdleMs is 0. */
  open(signal?: AbortSignal, service?: string, options?: OpenOptions): Promise<Tunnel>;
  /**
   * A stream of the session that is up now, handed over at once as with `early` (no promise, no
   * signal: what `--listen` does for each local connection); null when no session is up (or sessions
   * are off): then open().
   */
  openLive(service?: string): Tunnel | null;
  /**
   * Glue a local socket to a new stream of the session that is up now, with no Duplex in between
   * (a mux session: what `--listen` does first); false when that cannot be done now: openLive() or
   * open(). A refusal or a missing answer destroys `sock` and calls `onReset` with the reason.
   */
  attachLive(sock: Socket, onReset: (err: Error) => void, service?: string): boolean;
  stop(): Promise<void>;
  /** Where the device's connection is accepted. */
  acceptAddress(): { address: string; port: number };
  /** The router's mapping of the accept port, if one was made. */
  portMapping(): { externalHost: string; externalPort: number; via: 'upnp' | 'natpmp' } | null;
}

export function createClient(input: ClientOptions): Client {
  const o = validate(input);
  const listener: PeerListener = createPeerListener(o.accept);
  let accessKey: Buffer | null = o.accessKey ?? null;
  // The request's tag key and the wake key depend on the access key alone: derived once, not per request.
  let requestKeys: RequestKeys | null = null;
  const keysFor = (key: Buffer): RequestKeys =>
    requestKeys?.key === key ? requestKeys : (requestKeys = { key, tag: deriveRequestTagKey(key), wake: deriveWakeKey(key) });
  let started = false;
  let mapping: PortMapping | null = null;
  const attemptContext = (): AttemptContext => ({
    server: o.server,
    serverName: o.serverName,
    caPem: o.caPem,
    peerTimeoutMs: o.peerTimeoutMs,
    logger: o.logger,
    mapping,
  });
  // How the last connection to the device went, per local address: the DIRECT_FAILED_BEFORE hint.
  const pathMemory = createPathMemory();
  // Offers joined when the device's relay plan says, released if another path wins (relay-plan.ts).
  const relayPlans = createRelayPlans();
  const natMapping = clientMappingFor(o.probePorts, { host: o.server.host, logger: o.logger, clock: o.clock });
  // The TLS connection to the server, kept between requests (server-link.ts).
  const link = createServerLink({
    server: { host: o.server.host, port: o.server.port, serverName: o.serverName, caPem: o.caPem },
    keepMs: o.serverKeepMs,
    helloTimeoutMs: o.resultTimeoutMs,
    clock: o.clock,
  });

  async function ensureStarted(signal?: AbortSignal): Promise<void> {
    if (started) return;
    if (!accessKey) accessKey = await deriveAccessKey(o.password!, o.equipmentId, signal);
    await listener.start();
    if (o.mapPort !== 'off') {
      mapping = await mapTcpPort({ port: listener.address().port, mode: o.mapPort, logger: o.logger, ...(signal ? { signal } : {}) });
      if (!mapping)
        o.logger.warn({ mode: o.mapPort }, 'no gateway mapped the accept port; the device may not reach us directly (the relay remains)');
    }
    started = true;
  }

  // Sessions with streams (agent/session): one rendezvous, then a stream per open() (client-streams.ts).
  const streams = createClientStreams({ sessionIdleMs: o.sessionIdleMs, peerTimeoutMs: o.peerTimeoutMs, openTunnel, logger: o.logger });

  async function openTunnel(service: string, signal?: AbortSignal): Promise<Tunnel & { stream: TLSSocket }> {
    try {
      return await openTunnelOnce(service, signal, false);
    } catch (err) {
      // The kept connection to the server died under the request (closed idle at the server, a
      // restart): once more on a new one, with a new request (the device may have seen that one).
      if (!(err instanceof KeptConnectionLost)) throw err;
      o.logger.info('the kept connection to the server closed before its answer; requesting again on a new one');
      return openTunnelOnce(service, signal, true);
    }
  }

  async function openTunnelOnce(service: string, signal: AbortSignal | undefined, fresh: boolean): Promise<Tunnel & { stream: TLSSocket }> {
    await ensureStarted(signal);
    const key = accessKey!;
    const t0 = performance.now();
    const advertisedPort = o.advertisePort ?? mapping?.externalPort ?? listener.address().port;
    const clientNonce = randomBytes(NONCE_BYTES);
    const expected: Expected = { clientNonce, accessKey: key, equipmentId: o.equipmentId, service };

    let resolvePeer!: (s: TLSSocket) => void;
    const peer = new Promise<TLSSocket>((r) => (resolvePeer = r));
    const unexpect = listener.expect({ ...expected, resolve: resolvePeer });
    try {
      const answer = await request(expected, advertisedPort, signal, fresh);
      const seenAs = answer.candidates.find((c) => c.kind === CandidateKind.OBSERVED)?.endpoint;
      const attempts = clientAttempts(attemptContext(), peer, answer, expected);
      const won = await racePaths<TLSSocket, ClientAttempt>({
        attempts,
        ...(signal ? { signal } : {}),
        deadlineMs: o.peerTimeoutMs,
        onDeadline: (failures) =>
          new PeerlinkError(
            ErrorCodes.PEER_TIMEOUT,
            `the device accepted but no channel came up within ${o.peerTimeoutMs} ms: neither its direct connection to port ${advertisedPort}${answer.relayOffer ? ' nor the relay' : ''}${!answer.relayOffer && answer.detail !== STATUS_TEXT[Status.OK] ? ` (server: ${answer.detail})` : ''}${failures.length ? ` (${failures.join('; ')})` : ''}`,
          ),
      }).then(
        (w) => {
          // Another path won: the offer we did not (or no longer) need gives its share back now.
          if (w.attempt.via !== 'relay') answer.relayDeferred?.release();
          else answer.relayDeferred?.done();
          return w;
        },
        (err: unknown) => {
          answer.relayDeferred?.release();
          throw err;
        },
      );
      const { via, to } = won.attempt;
      const connectMs = performance.now() - t0;
      pathMemory.record(
        o.equipmentId,
        answer.localAddress,
        { relayed: via === 'relay', rushed: hintsMayRush(answer.hints) },
        o.clock.now(),
      );
      const path =
        lanPath(via, to, answer.lanTargets, won.stream.remoteAddress, answer.lanOffer) ??
        describePath(
          attemptContext(),
          via,
          to,
          seenAs,
          advertisedPort,
          won.failures,
          won.stream.localAddress ? { address: won.stream.localAddress, port: won.stream.localPort ?? 0 } : undefined,
        );
      o.logger.info(
        { connectMs: Math.round(connectMs), via },
        via === 'relay' ? 'channel up through the relay; S209 data' : 'S208 direct channel up; S209 data',
      );
      return { stream: won.stream, path, via, connectMs };
    } finally {
      unexpect();
    }
  }

  /** S203 to S207 with the server: the sealed request out; the relay offer, candidates and verdict back. */
  async function request(
    expected: Expected,
    advertisedPort: number,
    signal: AbortSignal | undefined,
    fresh: boolean,
  ): Promise<ServerAnswer> {
    const { clientNonce, accessKey: key } = expected;
    // Our NAT's mapping, learnt alongside a new TLS connect; a kept connection has no connect to hide it behind.
    const natCheck = link.idle > 0 && !fresh ? null : natMapping?.begin(signal);
    const conn = await link.acquire(signal, fresh);
    const { tls, channel } = conn;
    // RELAY_NOW for any of our deferred offers may come on this connection at any time (relay-plan.ts).
    relayPlans.watch(channel);
    const requestLocalPort = tls.localPort ?? 0;
    // Our endpoint of the other family, for a device that shares only that one with us (companion.ts).
    let companionLocal: Endpoint | null = null;
    void openCompanion(
      { host: o.server.host, port: o.server.port, serverName: o.serverName, caPem: o.caPem },
      tls,
      () => ({ type: FrameType.CLIENT_COMPANION, clientNonce }),
      signal,
    ).then((ep) => (companionLocal = ep));
    const localAddress = tls.localAddress ?? '';
    // Our LAN address and accept port, for a device in the same home (lan-candidates.ts).
    const lanOffer = clientLanOffer(tls.localAddress, listener.address());
    let hints = pathHints(localAddress, tls.remoteAddress ?? '');
    let status: number;
    let detail: string;
    let relayOffer: RelayOfferFrame | null = null;
    let relayPlan: number | null = null;
    const candidates: Candidate[] = [];
    let answered = false;
    let kept = false;
    try {
      // The server's clock (its HELLO), so a client with a wrong clock still makes fresh requests.
      const serverNow = conn.serverNow();
      hints |= natCheck
        ? await natCheck.hints(familyOf(tls.remoteAddress ?? ''))
        : natMapping?.last() === 'symmetric'
          ? PathHint.SYMMETRIC_MAPPING
          : 0;
      const sealedRequest = sealRequest(
        {
          clientNonce,
          timestampMs: serverNow,
          equipmentId: o.equipmentId,
          service: expected.service,
          advertisedPort,
          lan: lanOffer,
          hints,
        },
        keysFor(key).tag,
      );
      // The wake proof lets the device check the password before it does any TLS work (P9).
      const wake = makeWake(keysFor(key).wake, o.equipmentId, clientNonce, serverNow);
      channel.send({ type: FrameType.CONNECT_REQUEST, equipmentId: o.equipmentId, advertisedPort, wake, sealedRequest });
      o.logger.info({ equipmentId: o.equipmentId, service: expected.service, advertisedPort, hints }, 'S203 connection request sent');
      let result = await channel.next(o.resultTimeoutMs, signal).catch((err: unknown) => {
        if (conn.reused && isPeerlinkError(err, ErrorCodes.SERVER_UNREACHABLE)) throw new KeptConnectionLost(err);
        throw err;
      });
      while (result.type === FrameType.RELAY_OFFER || result.type === FrameType.CANDIDATES || result.type === FrameType.RELAY_PLAN) {
        if (result.type === FrameType.RELAY_OFFER) relayOffer = { requestId: result.requestId, joinToken: result.joinToken };
        else if (result.type === FrameType.RELAY_PLAN) {
          // Only a server we agreed relay plans with sends one (an older one never does).
          if (tls.alpnProtocol !== RENDEZVOUS_ALPN || !relayOffer || !result.requestId.equals(relayOffer.requestId))
            throw new PeerlinkError(ErrorCodes.PROTOCOL, 'server sent a relay plan out of turn');
          relayPlan = result.relayInMs;
        } else candidates.push(...result.candidates.slice(0, CANDIDATES_MAX - candidates.length));
        result = await channel.next(o.resultTimeoutMs, signal);
      }
      if (result.type !== FrameType.CONNECT_RESULT) throw new PeerlinkError(ErrorCodes.PROTOCOL, 'server answered out of turn');
      status = result.status;
      detail = result.detail;
      answered = true;
    } finally {
      if (answered) kept = link.release(conn);
      else link.discard(conn);
    }
    if (status !== Status.OK) {
      const code = STATUS_ERROR[status as keyof typeof STATUS_ERROR] ?? ErrorCodes.INTERNAL;
      throw new PeerlinkError(code, detail || STATUS_TEXT[status as keyof typeof STATUS_TEXT]);
    }
    return {
      detail,
      relayOffer,
      // Deferred only where the offer can be released again: over this connection, kept open.
      relayDeferred: relayOffer && relayPlan !== null && kept ? relayPlans.defer(conn, relayOffer.requestId, relayPlan) : null,
      candidates,
      requestLocalPort,
      requestFamily: familyOf(tls.remoteAddress ?? ''),
      companionLocal,
      lanOffer,
      lanTargets: deviceLanTargets(candidates, tls.localAddress),
      localAddress,
      hints,
    };
  }

  /**
   * What we know of our side, for the device's relay timing (agent/paths/relay-hint.ts): no
   * inbound connection without a mapping or an advertised port from a home LAN address (unless the
   * server is on a LAN too: a private deployment), and the relay's win last time from here.
   */
  function pathHints(localAddress: string, serverAddress: string): number {
    let hints = 0;
    if (!mapping && o.advertisePort === undefined && isLanAddress(localAddress) && !isLanAddress(serverAddress))
      hints |= PathHint.NO_INBOUND;
    if (pathMemory.directFailed(o.equipmentId, localAddress, o.clock.now())) hints |= PathHint.DIRECT_FAILED_BEFORE;
    return hints;
  }

  return {
    start: ensureStarted,
    open: (signal, service = o.service, options = {}) => streams.open(service, signal, options),
    openLive: (service = o.service) => streams.openLive(service),
    attachLive: (sock, onReset, service = o.service) => streams.attachLive(service, sock, onReset),
    async stop() {
      await streams.stop();
      link.stop();
      await mapping?.release().catch(() => undefined);
      mapping = null;
      await listener.stop();
      started = false;
    },
    portMapping: () => (mapping ? { externalHost: mapping.externalHost, externalPort: mapping.externalPort, via: mapping.via } : null),
    acceptAddress: () => listener.address(),
  };
}

interface RequestKeys {
  readonly key: Buffer;
  readonly tag: Buffer;
  readonly wake: Buffer;
}

/**
 * One tunnel, then the client is stopped when the stream closes. The API's simplest form. It
 * carries one connection, so it makes no session (a stream would cost a round trip more) unless
 * options.sessionIdleMs asks for one.
 */
export async function connect(options: ClientOptions, signal?: AbortSignal): Promise<Tunnel> {
  const client = createClient({ ...options, sessionIdleMs: options.sessionIdleMs ?? 0 });
  try {
    const tunnel = await client.open(signal);
    tunnel.stream.once('close', () => void client.stop());
    return tunnel;
  } catch (err) {
    await client.stop();
    throw err;
  }
}
