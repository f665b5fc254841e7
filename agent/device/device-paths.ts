/**
 * The device's side of the path race (S208 and beyond, docs/paths.md): the patent's dial to the
 * client, the client's other family and LAN address, a hole punch, the client's reverse dial to our
 * own port, and the server's relay (a plain leg first), after relayAfterMs or once every direct path
 * has failed. The first end-to-end channel wins (paths/path-race.ts).
 */
import type { Logger } from 'pino';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { punchTcp } from '../nat/tcp-punch.js';
import type { Endpoint } from '../protocol/address.js';
import type { ReverseListener } from './reverse-listener.js';
import { RELAY_PAIR_TIMEOUT_MS } from '../protocol/constants.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';
import { ATTACH_EXPORTER_LABEL, attachProof, KEY_BYTES } from '../protocol/keys.js';
import { dialClient, type DialOptions } from './dialer.js';
import { connectToServer } from '../rendezvous/server-tls.js';
import { joinRelayLeg } from '../rendezvous/relay-leg-join.js';
import { racePaths, type PathAttempt, type PathRaceWinner } from '../paths/path-race.js';
import type { SessionContext } from './request-session.js';

/** What the race needs of the request session's context. */
type PathContext = Pick<SessionContext, 'identity' | 'server' | 'dialTimeoutMs' | 'directTimeoutMs' | 'signal'>;

type DeviceAttempt = PathAttempt<TLSSocket>;

/** What the device has to offer for the reverse strategy: its listener and the endpoints to report. */
export interface ReverseOffer {
  readonly listener: ReverseListener;
  /** LISTEN candidates: a router mapping, and/or 0.0.0.0:port ("where you see me from"). */
  readonly endpoints: () => readonly Endpoint[];
}

/**
 * Meet the client at the server's relay for this request; resolves with the paired stream: a plain
 * leg first (rendezvous/relay-leg-join.ts, issue 15), over TLS where the server has none.
 */
async function joinRelay(requestId: Buffer, ctx: PathContext, signal: AbortSignal): Promise<Duplex> {
  const leg = await joinRelayLeg({
    host: ctx.server.host,
    port: ctx.server.port,
    requestId,
    key: ctx.identity.registrationKey,
    role: 'device',
    equipmentId: ctx.identity.equipmentId,
    ...(ctx.identity.generation ? { generation: ctx.identity.generation } : {}),
    pairTimeoutMs: RELAY_PAIR_TIMEOUT_MS,
    signal,
  });
  if (leg) return leg;
  const tls = await connectToServer({ ...ctx.server, caPem: ctx.identity.caCert, signal });
  const channel = new FrameChannel(tls);
  try {
    await channel.next(ctx.dialTimeoutMs, signal); // HELLO
    const exporter = tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
    channel.send({
      type: FrameType.RELAY_JOIN_DEVICE,
      equipmentId: ctx.identity.equipmentId,
      ...(ctx.identity.generation ? { generation: ctx.identity.generation } : {}),
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

/**
 * The device's attempts in the path race (path-race.ts): the patent's dial (S208), the client's LAN
 * address when in the same home, a hole punch,
 * the client's reverse dial; the relay after relayAfterMs, or at once when all of those have failed.
 */
export function raceDevicePaths(
  requestId: Buffer,
  ctx: PathContext,
  p: {
    /** ctx.relayAfterMs, or 0 when no direct path can come. */
    relayAfterMs: number;
    channelOptions: Omit<DialOptions, 'timeoutMs' | 'signal' | 'over'>;
    punch: readonly { localPort: number; remote: Endpoint }[];
    /** The client's address of the other family (its companion), at its accept port. */
    otherDial: Endpoint | null;
    reverse: { listener: ReverseListener; token: Buffer } | null;
    /** The client's LAN address (lan-candidate.ts), dialled alongside. */
    lan: Endpoint | null;
    log: Logger;
  },
): Promise<PathRaceWinner<TLSSocket, DeviceAttempt>> {
  const over =
    (signal: AbortSignal) =>
    (sock: Duplex): Promise<TLSSocket> =>
      dialClient({ ...p.channelOptions, over: sock, timeoutMs: ctx.dialTimeoutMs, signal });
  const attempts: DeviceAttempt[] = [
    { via: 'dial', start: (signal) => dialClient({ ...p.channelOptions, timeoutMs: ctx.directTimeoutMs, signal }) },
  ];
  const { reverse, lan, otherDial } = p;
  if (otherDial)
    attempts.push({
      via: 'dial',
      start: (signal) => dialClient({ ...p.channelOptions, to: otherDial, timeoutMs: ctx.directTimeoutMs, signal }),
    });
  if (lan)
    attempts.push({ via: 'lan', start: (signal) => dialClient({ ...p.channelOptions, to: lan, timeoutMs: ctx.directTimeoutMs, signal }) });
  for (const punch of p.punch) {
    attempts.push({
      via: 'punch',
      start: (signal) =>
        punchTcp({ localPort: punch.localPort, remote: punch.remote, timeoutMs: ctx.directTimeoutMs, signal }).then(over(signal)),
    });
  }
  if (reverse) {
    attempts.push({
      via: 'reverse',
      start: (signal) =>
        reverse.listener.await(reverse.token, AbortSignal.any([signal, AbortSignal.timeout(ctx.directTimeoutMs)])).then(over(signal)),
    });
  }
  attempts.push({
    via: 'relay',
    fallbackAfterMs: p.relayAfterMs,
    start: (signal) => joinRelay(requestId, ctx, signal).then(over(signal)),
  });
  return racePaths<TLSSocket, DeviceAttempt>({
    attempts,
    signal: ctx.signal,
    onFailure: (a, err) => p.log.info({ via: a.via, reason: err.message }, 'path failed'),
    onFallback: (_a, failures) => p.log.info({ failures }, 'meeting the client at the relay'),
  });
}
