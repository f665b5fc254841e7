/**
 * One connection request, from the device's side: after a notification (packet 205) open TLS to
 * the server (S206), prove we are the device for this request, receive the forwarded request,
 * decide (S207), answer, and only on success dial the client (S208) and join it to the local
 * service (S209). Beyond the patent, the dial races a hole punch, the client's reverse dial to the
 * device's own port, and (after a short delay) the relay; the first end-to-end channel wins.
 */
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { join } from '../common/pipe.js';
import { abortError, ErrorCodes, isPeerlinkError, PeerlinkError } from '../common/errors.js';
import { punchTcp } from '../nat/tcp-punch.js';
import type { Endpoint } from '../protocol/address.js';
import { announceChosen } from '../protocol/tunnel-choice.js';
import type { ReverseListener } from './reverse-listener.js';
import { RELAY_PAIR_TIMEOUT_MS } from '../protocol/constants.js';
import { formatEndpoint } from '../protocol/address.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { CANDIDATES_MAX, CandidateKind, FrameType, type Candidate } from '../protocol/frames.js';
import { ATTACH_EXPORTER_LABEL, attachProof, equalBytes, KEY_BYTES, reverseToken } from '../protocol/keys.js';
import { Status } from '../protocol/status.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import type { Authorize, Decision } from './authorizer.js';
import { connectService, dialClient, type DialOptions } from './dialer.js';
import { connectToServer } from '../rendezvous/server-tls.js';
import { firstFulfilled } from '../common/first-fulfilled.js';
import { OWNER_TARGET } from './authorizer.js';

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
  /** The reverse strategy, when the agent has a listening port. */
  readonly reverse?: ReverseOffer;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Serve an OWNER_SERVICE session over the end-to-end channel (owner-service.ts, issue 19). */
  readonly ownerSession?: (tunnel: TLSSocket) => Promise<void>;
}

export interface SessionOutcome {
  readonly status: number;
  readonly bytesToClient: number;
  readonly bytesFromClient: number;
}

/** Meet the client at the server's relay for this request; resolves with the paired stream. */
async function joinRelay(requestId: Buffer, ctx: SessionContext, signal: AbortSignal): Promise<TLSSocket> {
  const tls = await connectToServer({ ...ctx.server, caPem: ctx.identity.caCert, signal });
  const channel = new FrameChannel(tls);
  try {
    await channel.next(ctx.dialTimeoutMs, signal); // HELLO
    const exporter = tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
    channel.send({
      type: FrameType.RELAY_JOIN_DEVICE,
      equipmentId: ctx.identity.equipmentId,
      requestId,
      proof: attachProof(ctx.identity.registrationKey, requestId, exporter),
    });
    const paired = await channel.next(RELAY_PAIR_TIMEOUT_MS, signal);
    if (paired.type !== FrameType.RELAY_PAIRED) throw new PeerlinkError(ErrorCodes.PROTOCOL, 'relay answered out of turn');
    return tls;
  } catch (err) {
    tls.destroy();
    throw err;
  }
}

/** What the device has to offer for the reverse strategy: its listener and the endpoints to report. */
export interface ReverseOffer {
  readonly listener: ReverseListener;
  /** LISTEN candidates: a router mapping, and/or 0.0.0.0:port ("where you see me from"). */
  readonly endpoints: () => readonly Endpoint[];
}

type Path = 'dial' | 'punch' | 'reverse' | 'relay';
interface Won {
  readonly tunnel: TLSSocket;
  readonly via: Path;
}

export async function runRequestSession(requestId: Buffer, ctx: SessionContext): Promise<SessionOutcome> {
  const log = ctx.logger.child({ requestId: requestId.toString('hex').slice(0, 12) });
  // Bound explicitly, so that a hole punch can later leave from the port the server observed.
  const tls = await connectToServer({ ...ctx.server, caPem: ctx.identity.caCert, signal: ctx.signal, bindLocal: true });
  const attachLocalPort = tls.localPort ?? 0;
  const channel = new FrameChannel(tls);
  let service: Socket | null = null;
  try {
    const hello = await channel.next(ctx.dialTimeoutMs, ctx.signal);
    if (hello.type === FrameType.HELLO) ctx.observeServerTime(hello.serverTimeMs, Date.now());
    const exporter = tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
    channel.send({
      type: FrameType.DEVICE_ATTACH,
      equipmentId: ctx.identity.equipmentId,
      requestId,
      proof: attachProof(ctx.identity.registrationKey, requestId, exporter),
    });
    log.info('S206 connected to the server over TLS (certificate verified against the bundled CA)');
    let fwd = await channel.next(ctx.dialTimeoutMs, ctx.signal);
    const told: Candidate[] = [];
    while (fwd.type === FrameType.CANDIDATES && told.length < CANDIDATES_MAX) {
      told.push(...fwd.candidates);
      fwd = await channel.next(ctx.dialTimeoutMs, ctx.signal);
    }
    if (fwd.type !== FrameType.FORWARD_REQUEST || !equalBytes(fwd.requestId, requestId)) {
      log.warn('server sent something other than the forwarded request');
      return { status: Status.BAD_REQUEST, bytesToClient: 0, bytesFromClient: 0 };
    }
    // Where we reached the server decides whether a private client address is plausible (P3).
    const decision = await ctx.authorize(fwd, ctx.serverNow(), tls.remoteAddress ?? '');
    let status: number = decision.status;
    const owner = decision.status === Status.OK && decision.target === OWNER_TARGET ? ctx.ownerSession : undefined;
    if (decision.status === Status.OK && decision.target === OWNER_TARGET && !owner) status = Status.SERVICE_REFUSED;
    if (decision.status !== Status.OK) {
      log.warn({ status: decision.status, reason: decision.reason, client: formatEndpoint(fwd.client) }, 'S207 request refused');
    } else if (!owner) {
      try {
        service = await connectService(decision.target, ctx.dialTimeoutMs);
      } catch (err) {
        status = Status.SERVICE_UNAVAILABLE;
        log.warn({ err: (err as Error).message }, 'S207 request valid but the local service is down');
      }
    }
    const reverse = status === Status.OK ? ctx.reverse : undefined;
    const listen = reverse?.endpoints() ?? [];
    if (listen.length > 0) {
      channel.send({ type: FrameType.CANDIDATES, candidates: listen.slice(0, CANDIDATES_MAX).map((endpoint) => ({ kind: CandidateKind.LISTEN, endpoint })) });
    }
    channel.send({ type: FrameType.DEVICE_VERDICT, requestId, status: status as typeof Status.OK });
    channel.close();
    if (decision.status !== Status.OK || status !== Status.OK || (!service && !owner)) {
      return { status, bytesToClient: 0, bytesFromClient: 0 };
    }
    // Punch only towards the address the dial policy just approved (the client's observed one).
    const punch = told.find((c) => c.kind === CandidateKind.PUNCH && c.endpoint.address === decision.dial.address)?.endpoint;
    log.info(
      { service: decision.request.service, client: formatEndpoint(decision.dial), punch: punch ? formatEndpoint(punch) : null, listen: listen.map(formatEndpoint) },
      'S207 request authorised; S208 dialling the client (and trying the other paths alongside)',
    );
    const channelOptions = {
      to: decision.dial,
      accessKey: ctx.identity.accessKey,
      clientNonce: decision.request.clientNonce,
      equipmentId: ctx.identity.equipmentId,
      service: decision.request.service,
    };
    const won = await racePaths(requestId, ctx, {
      channelOptions,
      punch: punch && attachLocalPort && ctx.holePunch ? { localPort: attachLocalPort, remote: punch } : null,
      reverse: reverse && listen.length > 0 ? { listener: reverse.listener, token: reverseToken(ctx.identity.accessKey, decision.request.clientNonce) } : null,
      log,
    });
    const tunnel = won.tunnel;
    announceChosen(tunnel);
    if (owner) {
      const onAbortOwner = (): void => void tunnel.destroy();
      ctx.signal.addEventListener('abort', onAbortOwner, { once: true });
      await owner(tunnel).finally(() => ctx.signal.removeEventListener('abort', onAbortOwner));
      return { status: Status.OK, bytesToClient: 0, bytesFromClient: 0 };
    }
    log.info(
      { via: won.via },
      won.via === 'relay'
        ? 'end-to-end channel up through the relay (TLS 1.3 PSK; the server sees ciphertext only); S209 forwarding data'
        : 'S208 direct channel up (TLS 1.3 PSK); S209 forwarding data',
    );
    const svc = service!;
    service = null;
    const onAbort = (): void => {
      tunnel.destroy();
      svc.destroy();
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    svc.resume();
    const r = await join(tunnel, svc);
    ctx.signal.removeEventListener('abort', onAbort);
    log.info({ bytesFromClient: r.bytesAtoB, bytesToClient: r.bytesBtoA }, 'S209 session ended');
    return { status: Status.OK, bytesToClient: r.bytesBtoA, bytesFromClient: r.bytesAtoB };
  } catch (err) {
    log.warn({ err: isPeerlinkError(err) ? err.code : (err as Error).message, detail: (err as Error).message }, 'request session failed');
    throw err;
  } finally {
    service?.destroy();
    if (!tls.destroyed) channel.close();
  }
}

/**
 * Every path at once: the patent's dial (S208), a hole punch, the client's reverse dial; the relay
 * after relayAfterMs, or at once when all of those have failed. The first end-to-end handshake
 * wins; the others are cancelled or closed.
 */
async function racePaths(
  requestId: Buffer,
  ctx: SessionContext,
  p: {
    channelOptions: Omit<DialOptions, 'timeoutMs' | 'signal' | 'over'>;
    punch: { localPort: number; remote: Endpoint } | null;
    reverse: { listener: ReverseListener; token: Buffer } | null;
    log: Logger;
  },
): Promise<Won> {
  const paths = new AbortController();
  const signal = AbortSignal.any([ctx.signal, paths.signal]);
  const directSignal = AbortSignal.any([signal, AbortSignal.timeout(ctx.directTimeoutMs)]);
  const failures: string[] = [];
  const note = (via: Path) => (err: unknown): never => {
    if (!signal.aborted) {
      failures.push(`${via}: ${(err as Error).message}`);
      p.log.info({ via, reason: (err as Error).message }, 'path failed');
    }
    throw err;
  };
  const over = (sock: Duplex): Promise<TLSSocket> => dialClient({ ...p.channelOptions, over: sock, timeoutMs: ctx.dialTimeoutMs, signal });
  const direct: Promise<Won>[] = [
    dialClient({ ...p.channelOptions, timeoutMs: ctx.directTimeoutMs, signal }).then((tunnel) => ({ tunnel, via: 'dial' as const }), note('dial')),
  ];
  if (p.punch) {
    const { localPort, remote } = p.punch;
    direct.push(
      punchTcp({ localPort, remote, timeoutMs: ctx.directTimeoutMs, signal })
        .then(over)
        .then((tunnel) => ({ tunnel, via: 'punch' as const }), note('punch')),
    );
  }
  if (p.reverse) {
    direct.push(
      p.reverse.listener
        .await(p.reverse.token, directSignal)
        .then(over)
        .then((tunnel) => ({ tunnel, via: 'reverse' as const }), note('reverse')),
    );
  }
  const allDirectFailed = Promise.allSettled(direct);
  const relay: Promise<Won> = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ctx.relayAfterMs);
    void allDirectFailed.then(() => {
      clearTimeout(timer);
      resolve();
    });
    signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  })
    .then(() => {
      if (signal.aborted) throw abortError(signal);
      p.log.info({ failures }, 'meeting the client at the relay');
      return joinRelay(requestId, ctx, signal);
    })
    .then(over)
    .then((tunnel) => ({ tunnel, via: 'relay' as const }), note('relay'));
  const attempts = [...direct, relay];
  try {
    const won = await firstFulfilled(attempts);
    // A path that completed a moment later is closed, not leaked.
    for (const a of attempts) void a.then((r) => r !== won && r.tunnel.destroy(), () => undefined);
    return won;
  } finally {
    paths.abort();
  }
}

