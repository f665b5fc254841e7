/**
 * One connection request, from the device's side: after a notification (packet 205) open TLS to
 * the server (S206), prove we are the device for this request, receive the forwarded request,
 * decide (S207), answer, and only on success dial the client (S208) and join it to the local
 * service (S209). Beyond the patent, the dial races a hole punch, the client's reverse dial to the
 * device's own port, and (after a short delay) the relay; the first end-to-end channel wins.
 */
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join, TUNNEL_JOIN_QUEUE_BYTES } from '../common/pipe.js';
import { isPeerlinkError } from '../common/errors.js';
import type { Endpoint } from '../protocol/address.js';
import { announceChosen } from '../protocol/tunnel-choice.js';
import { formatEndpoint, normalizeAddress } from '../protocol/address.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { CANDIDATES_MAX, CandidateKind, FrameType, type Candidate, type Frame } from '../protocol/frames.js';
import { RENDEZVOUS_ALPN } from '../protocol/constants.js';
import { ATTACH_EXPORTER_LABEL, attachProof, equalBytes, KEY_BYTES, reverseToken } from '../protocol/keys.js';
import { Status } from '../protocol/status.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { OWNER_TARGET, type Authorize, type Decision } from './authorizer.js';
import { connectService } from './dialer.js';
import { connectToServer } from '../rendezvous/server-tls.js';
import type { PathKind } from '../paths/path-race.js';
import { relayAtOnceReason, type MappingBehaviour } from '../paths/relay-hint.js';
import { deviceLanOffer, lanDialTarget } from './lan-candidate.js';
import type { HostPort } from '../common/endpoint-parse.js';
import { serveDeviceSession } from '../session/device-session.js';
import { serveMuxDeviceSession } from '../session/mux-device-session.js';
import type { SessionStreamCounter } from '../session/session-counts.js';
import { MUX_SERVICE } from '../protocol/session-streams.js';
import { openCompanion } from '../rendezvous/companion.js';
import type { DialPolicy } from './address-policy.js';
import { familyOf, punchTargets } from './punch-targets.js';
import type { ServerConnection } from './kept-connection.js';
import { raceDevicePaths, type ReverseOffer } from './device-paths.js';

export type { ReverseOffer } from './device-paths.js';

export interface SessionContext {
  readonly identity: DeviceIdentity;
  readonly server: { readonly host: string; readonly port: number; readonly serverName: string };
  /** S207 (authorizer.ts), then what must happen before the device acts (the replay mark, P12). */
  readonly authorize: (...args: Parameters<Authorize>) => Decision | Promise<Decision>;
  readonly serverNow: () => number;
  readonly observeServerTime: (serverTimeMs: number, localMs: number) => void;
  readonly dialTimeoutMs: number;
  /** The direct paths' budget (dial, punch, reverse). */
  readonly directTimeoutMs: number;
  /** When the relay is tried alongside (sooner if every direct path has failed). */
  readonly relayAfterMs: number;
  readonly holePunch: boolean;
  /** Our NAT's mapping behaviour as learnt (nat/mapping-behaviour.ts); default unknown. */
  readonly natMapping?: () => MappingBehaviour;
  /** The reverse strategy, when the agent has a listening port. */
  readonly reverse?: ReverseOffer;
  /** The allow-list, for sessions with streams (each stream names its service); without it sessions are refused. */
  readonly services?: () => ReadonlyMap<string, HostPort>;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Serve an OWNER_SERVICE session over the end-to-end channel (owner-service.ts, issue 19). */
  readonly ownerSession?: (tunnel: TLSSocket) => Promise<void>;
  /** The dial settings (P3), for the client's endpoint of the other family; without them it is not dialled. */
  readonly dialPolicy?: () => DialPolicy;
  /** Attach over this kept connection (woken over it, kept-connection.ts) instead of a new one. */
  readonly over?: ServerConnection;
  /** After the verdict, keep the connection for `idleMs` (DEVICE_IDLE) and hand it to `keep`; absent: close it. */
  readonly keep?: { readonly idleMs: number; readonly keep: (conn: ServerConnection) => void };
  /** Counts a session's stream refusals and broken framing as they happen (session-counts.ts). */
  readonly countStream?: (what: SessionStreamCounter) => void;
}

/** How long the verdict may wait for our companion connection to be under way (companion.ts). */
export const COMPANION_WAIT_MS = 300;

export interface SessionOutcome {
  readonly status: number;
  readonly bytesToClient: number;
  readonly bytesFromClient: number;
}

const isUnspecified = (a: string): boolean => a === '0.0.0.0' || a === '::';
/** One address in either text form (a v4-mapped IPv6 address is its IPv4 address). */
const sameAddress = (a: string, b: string): boolean => normalizeAddress(a) === normalizeAddress(b);

type Forwarded = Extract<Frame, { type: typeof FrameType.FORWARD_REQUEST }>;

export async function runRequestSession(requestId: Buffer, ctx: SessionContext): Promise<SessionOutcome> {
  const log = ctx.logger.child({ requestId: requestId.toString('hex').slice(0, 12) });
  // Bound explicitly, so that a hole punch can later leave from the port the server observed.
  // Woken over a kept connection: the attach goes over it, no new TLS handshake (kept-connection.ts).
  const tls = ctx.over?.tls ?? (await connectToServer({ ...ctx.server, caPem: ctx.identity.caCert, signal: ctx.signal, bindLocal: true }));
  const attachLocalPort = tls.localPort ?? 0;
  const attachLocalAddress = tls.localAddress;
  const channel = ctx.over?.channel ?? new FrameChannel(tls);
  let kept = false;
  let service: Socket | null = null;
  // Our endpoint of the other family, for a client that shares only that one with us (companion.ts).
  const companion = ctx.holePunch
    ? openCompanion(
        { ...ctx.server, caPem: ctx.identity.caCert },
        tls,
        (c) => ({
          type: FrameType.DEVICE_COMPANION,
          equipmentId: ctx.identity.equipmentId,
          ...(ctx.identity.generation ? { generation: ctx.identity.generation } : {}),
          requestId,
          proof: attachProof(ctx.identity.registrationKey, requestId, c.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId)),
        }),
        ctx.signal,
      )
    : Promise.resolve(null);
  try {
    const { fwd, told } = await attach(requestId, ctx, tls, channel, log);
    if (!fwd) return { status: Status.BAD_REQUEST, bytesToClient: 0, bytesFromClient: 0 };
    const verdict = await decide(ctx, tls, fwd, log);
    service = verdict.service;
    // Our LAN address for a client in the same home, only when the server vouched (lan-candidate.ts).
    const lanOffer =
      verdict.status === Status.OK && ctx.reverse ? deviceLanOffer(told, attachLocalAddress, ctx.reverse.listener.port()) : [];
    // The server reads our companion when the verdict comes: give it a moment to arrive first.
    const companionLocal = verdict.status === Status.OK ? await settledWithin(companion, COMPANION_WAIT_MS) : null;
    const { decision, owner } = verdict;
    const accepted = verdict.status === Status.OK && decision.status === Status.OK;
    const listen = accepted ? (ctx.reverse?.endpoints() ?? []) : [];
    // The client's LAN address, only under the rules of lan-candidate.ts (P3b).
    const lan =
      decision.status === Status.OK && accepted ? lanDialTarget(told, decision.request, attachLocalAddress) : { dial: null, reason: null };
    // Where both sides' knowledge rules every direct path out, the relay need not wait (relay-hint.ts).
    // "Where you see me from" (0.0.0.0) reaches us only when the server sees our own address (public).
    const observed = told.find((c) => c.kind === CandidateKind.OBSERVED)?.endpoint;
    const isPublic = observed !== undefined && sameAddress(observed.address, attachLocalAddress ?? '');
    const atOnce =
      decision.status === Status.OK && accepted
        ? relayAtOnceReason({
            hints: decision.request.hints ?? 0,
            deviceListens: listen.some((e) => !isUnspecified(e.address) || isPublic),
            lanDial: lan.dial !== null,
            deviceMapping: ctx.natMapping?.() ?? 'unknown',
          })
        : null;
    const relayAfterMs = atOnce ? 0 : ctx.relayAfterMs;
    // A server that knows relay plans passes ours on, and the client joins the relay only then (RENDEZVOUS_ALPN).
    const plan = accepted && tls.alpnProtocol === RENDEZVOUS_ALPN ? relayAfterMs : null;
    const answered = answer(requestId, ctx, { tls, channel }, verdict.status, lanOffer, listen, plan);
    kept = answered.kept;
    const session = decision.status === Status.OK && decision.target === null;
    if (decision.status !== Status.OK || verdict.status !== Status.OK || (!service && !owner && !session)) {
      return { status: verdict.status, bytesToClient: 0, bytesFromClient: 0 };
    }
    // Punch only towards the address the dial policy just approved (the client's observed one), and
    // the client's companion of the other family under the same rules (P3); each from our own
    // connection of that family: the attach, or our companion (companion.ts).
    const punches = punchTargets(
      told,
      decision.dial,
      { attachLocalPort, attachRemote: tls.remoteAddress ?? '', companionLocal },
      ctx.holePunch ? (ctx.dialPolicy ?? null) : undefined,
    );
    const other = punches.find((p) => familyOf(p.remote.address) !== familyOf(decision.dial.address)) ?? null;
    if (lan.dial === null && lan.reason) log.info({ reason: lan.reason }, 'LAN candidate not dialled');
    log.info(
      {
        service: decision.request.service,
        client: formatEndpoint(decision.dial),
        punch: punches.map((p) => `${formatEndpoint(p.remote)} from port ${p.localPort}`),
        listen: listen.map(formatEndpoint),
        ...(lan.dial ? { lan: formatEndpoint(lan.dial) } : {}),
        ...(other ? { otherFamily: formatEndpoint(other.remote) } : {}),
      },
      'S207 request authorised; S208 dialling the client (and trying the other paths alongside)',
    );
    const channelOptions = {
      to: decision.dial,
      accessKey: ctx.identity.accessKey,
      clientNonce: decision.request.clientNonce,
      equipmentId: ctx.identity.equipmentId,
      service: decision.request.service,
    };
    if (atOnce) log.info({ reason: atOnce }, 'no direct path can come: meeting the client at the relay at once');
    const won = await raceDevicePaths(requestId, ctx, {
      relayAfterMs,
      channelOptions,
      punch: punches,
      otherDial: other ? { address: other.remote.address, port: decision.dial.port } : null,
      lan: lan.dial,
      reverse:
        ctx.reverse && listen.length > 0
          ? { listener: ctx.reverse.listener, token: reverseToken(ctx.identity.accessKey, decision.request.clientNonce) }
          : null,
      log,
    });
    if (owner) return await serveOwner(won.stream, owner, ctx);
    if (session) return await serveSession(won.stream, won.attempt.via, decision.request.service === MUX_SERVICE, ctx, log);
    const svc = service!;
    service = null;
    return await forward(won.stream, won.attempt.via, svc, ctx, log);
  } catch (err) {
    log.warn({ err: isPeerlinkError(err) ? err.code : (err as Error).message, detail: (err as Error).message }, 'request session failed');
    throw err;
  } finally {
    service?.destroy();
    if (!kept && !tls.destroyed) channel.close();
  }
}

/** S206: prove we are the device for this request; receive the forwarded request and the client's candidates. */
async function attach(
  requestId: Buffer,
  ctx: SessionContext,
  tls: TLSSocket,
  channel: FrameChannel,
  log: Logger,
): Promise<{ fwd: Forwarded | null; told: Candidate[] }> {
  // The attach goes out at once, without waiting for the server's HELLO on a new connection: the
  // server sends that only once it has our TLS Finished, a round trip after our handshake is done.
  const exporter = tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
  channel.send({
    type: FrameType.DEVICE_ATTACH,
    equipmentId: ctx.identity.equipmentId,
    ...(ctx.identity.generation ? { generation: ctx.identity.generation } : {}),
    requestId,
    proof: attachProof(ctx.identity.registrationKey, requestId, exporter),
  });
  if (ctx.over) log.info('S206 attach sent over the kept connection to the server (no new TLS handshake)');
  else log.info('S206 connected to the server over TLS (certificate verified against the bundled CA)');
  let fwd = await channel.next(ctx.dialTimeoutMs, ctx.signal);
  // A new connection's first frame is HELLO (a kept connection had its HELLO when it was opened).
  if (!ctx.over && fwd.type === FrameType.HELLO) {
    ctx.observeServerTime(fwd.serverTimeMs, Date.now());
    fwd = await channel.next(ctx.dialTimeoutMs, ctx.signal);
  }
  const told: Candidate[] = [];
  while (fwd.type === FrameType.CANDIDATES && told.length < CANDIDATES_MAX) {
    told.push(...fwd.candidates);
    fwd = await channel.next(ctx.dialTimeoutMs, ctx.signal);
  }
  if (fwd.type !== FrameType.FORWARD_REQUEST || !equalBytes(fwd.requestId, requestId)) {
    log.warn('server sent something other than the forwarded request');
    return { fwd: null, told };
  }
  return { fwd, told };
}

/**
 * S207: the authorizer's decision, and the local service connected when it says yes; or, for
 * OWNER_SERVICE, the agent's owner controls instead of a socket (refused while they are off).
 */
async function decide(
  ctx: SessionContext,
  tls: TLSSocket,
  fwd: Forwarded,
  log: Logger,
): Promise<{ decision: Decision; status: number; service: Socket | null; owner?: (tunnel: TLSSocket) => Promise<void> }> {
  // Where we reached the server decides whether a private client address is plausible (P3).
  const decision = await ctx.authorize(fwd, ctx.serverNow(), tls.remoteAddress ?? '');
  if (decision.status !== Status.OK) {
    log.warn({ status: decision.status, reason: decision.reason, client: formatEndpoint(fwd.client) }, 'S207 request refused');
    return { decision, status: decision.status, service: null };
  }
  if (decision.target === OWNER_TARGET) {
    if (ctx.ownerSession) return { decision, status: Status.OK, service: null, owner: ctx.ownerSession };
    log.warn('S207 owner controls requested but the owner state is unavailable');
    return { decision, status: Status.SERVICE_REFUSED, service: null };
  }
  if (decision.target === null) {
    // A session: its streams name their services, each checked when it opens.
    if (ctx.services) return { decision, status: decision.status, service: null };
    log.warn('S207 a session with streams was asked for; this agent serves none');
    return { decision, status: Status.SERVICE_REFUSED, service: null };
  }
  try {
    return { decision, status: decision.status, service: await connectService(decision.target, ctx.dialTimeoutMs) };
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'S207 request valid but the local service is down');
    return { decision, status: Status.SERVICE_UNAVAILABLE, service: null };
  }
}

/**
 * The verdict to the server (with our LAN and LISTEN candidates and our relay plan when we accept);
 * returns whether the connection is kept for the next request (else it is closed).
 */
function answer(
  requestId: Buffer,
  ctx: SessionContext,
  conn: ServerConnection,
  status: number,
  lanOffer: readonly Candidate[],
  listen: readonly Endpoint[],
  /** When we join the relay (ms after this verdict), for a server that passes it on; null: not sent. */
  relayInMs: number | null,
): { kept: boolean } {
  const { channel } = conn;
  const keep = ctx.keep && !conn.tls.destroyed ? ctx.keep : null;
  // The candidates, the verdict and DEVICE_IDLE in one TLS record and one write (uncork writes them as one).
  conn.tls.cork();
  try {
    if (listen.length > 0) {
      const candidates = [...lanOffer, ...listen.map((endpoint) => ({ kind: CandidateKind.LISTEN, endpoint }))];
      channel.send({ type: FrameType.CANDIDATES, candidates: candidates.slice(0, CANDIDATES_MAX) });
    }
    if (relayInMs !== null) channel.send({ type: FrameType.RELAY_PLAN, requestId, relayInMs });
    channel.send({ type: FrameType.DEVICE_VERDICT, requestId, status: status as typeof Status.OK });
    if (keep) channel.send({ type: FrameType.DEVICE_IDLE, idleMs: keep.idleMs });
  } finally {
    conn.tls.uncork();
  }
  if (keep) {
    keep.keep(conn);
    return { kept: true };
  }
  channel.close();
  return { kept: false };
}

/** S209: tell the client which channel we keep, then join it to the local service until either ends. */
async function forward(tunnel: TLSSocket, via: PathKind, svc: Socket, ctx: SessionContext, log: Logger): Promise<SessionOutcome> {
  announceChosen(tunnel);
  log.info(
    { via },
    via === 'relay'
      ? 'end-to-end channel up through the relay (TLS 1.3 PSK; the server sees ciphertext only); S209 forwarding data'
      : 'S208 direct channel up (TLS 1.3 PSK); S209 forwarding data',
  );
  const onAbort = (): void => {
    tunnel.destroy();
    svc.destroy();
  };
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  svc.resume();
  const r = await join(tunnel, svc, TUNNEL_JOIN_QUEUE_BYTES);
  ctx.signal.removeEventListener('abort', onAbort);
  log.info({ bytesFromClient: r.bytesAtoB, bytesToClient: r.bytesBtoA }, 'S209 session ended');
  return { status: Status.OK, bytesToClient: r.bytesBtoA, bytesFromClient: r.bytesAtoB };
}

/** An OWNER_SERVICE session: one request and its answer inside the end-to-end channel (owner-service.ts). */
async function serveOwner(tunnel: TLSSocket, owner: (tunnel: TLSSocket) => Promise<void>, ctx: SessionContext): Promise<SessionOutcome> {
  announceChosen(tunnel);
  const onAbort = (): void => void tunnel.destroy();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  await owner(tunnel).finally(() => ctx.signal.removeEventListener('abort', onAbort));
  return { status: Status.OK, bytesToClient: 0, bytesFromClient: 0 };
}

/** S209 for a session: our mux (or HTTP/2, for older clients) over the channel, a stream per service connection (agent/session). */
async function serveSession(tunnel: TLSSocket, via: PathKind, mux: boolean, ctx: SessionContext, log: Logger): Promise<SessionOutcome> {
  log.info({ via, framing: mux ? 'mux' : 'http2' }, 'end-to-end channel up (TLS 1.3 PSK); S209 serving a session with streams');
  const r = await (mux ? serveMuxDeviceSession : serveDeviceSession)({
    channel: tunnel,
    services: ctx.services!,
    connectService,
    connectTimeoutMs: ctx.dialTimeoutMs,
    logger: log,
    signal: ctx.signal,
    ...(ctx.countStream ? { count: ctx.countStream } : {}),
  });
  return { status: Status.OK, bytesToClient: r.bytesToClient, bytesFromClient: r.bytesFromClient };
}

/** `p` if it settles within `ms`, else null (it goes on; nobody waits for it). */
function settledWithin<T>(p: Promise<T | null>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}
