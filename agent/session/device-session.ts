/**
 * The device's end of a session with streams (agent/protocol/session-streams.ts): an HTTP/2
 * server session over the end-to-end channel. Each CONNECT stream names a service; the device
 * checks it against its allow-list as it stands now (a reload applies to the next stream),
 * connects the local service and joins the two, or refuses the stream alone. Bytes the client
 * sent with its CONNECT wait in the stream (within its window) until then; a refused stream's are
 * discarded. The session ends
 * when the client closes it, when the channel breaks, when no stream was open for `idleMs`, or
 * at stop (the signal).
 */
import { performServerHandshake, type Http2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { join } from '../common/pipe.js';
import type { HostPort } from '../common/endpoint-parse.js';
import { rejectUnknownKeys } from '../common/options.js';
import { SERVICE_NAME_PATTERN, TUNNEL_CHOSEN_BYTE } from '../protocol/constants.js';
import { Status, type StatusValue } from '../protocol/status.js';
import { createIdleClose } from './idle-close.js';
import { refusalCounter, type SessionStreamCounter } from './session-counts.js';
import {
  SESSION_MAX_HEADER_BYTES,
  SESSION_MAX_STREAMS,
  SESSION_STREAM_WINDOW_BYTES,
  SESSION_WINDOW_BYTES,
  streamAnswer,
} from '../protocol/session-streams.js';

/** A session with no stream open for this long is closed by the device (the client closes sooner). */
export const DEVICE_SESSION_IDLE_MS = 10 * 60_000;

export interface DeviceSessionOptions {
  /** The end-to-end channel, chosen by the device; the path-chosen byte is sent here. */
  readonly channel: Duplex;
  /** The allow-list, read for each stream. */
  readonly services: () => ReadonlyMap<string, HostPort>;
  /** Connect a local service (dialer.ts connectService in the agent). */
  readonly connectService: (target: HostPort, timeoutMs: number) => Promise<Socket>;
  readonly connectTimeoutMs: number;
  readonly idleMs?: number;
  readonly maxStreams?: number;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Counts refusals and broken framing as they happen (session-counts.ts; the agent's counters). */
  readonly count?: (what: SessionStreamCounter) => void;
}

export interface DeviceSessionOutcome {
  readonly streams: number;
  readonly refused: number;
  readonly bytesToClient: number;
  readonly bytesFromClient: number;
}

const KEYS = ['channel', 'services', 'connectService', 'connectTimeoutMs', 'idleMs', 'maxStreams', 'logger', 'signal', 'count'];

/** The options of either kind of device session, checked and defaulted once. */
export function deviceSessionOptions(input: DeviceSessionOptions) {
  rejectUnknownKeys('device session options', input, KEYS);
  return Object.freeze({
    ...input,
    idleMs: input.idleMs ?? DEVICE_SESSION_IDLE_MS,
    maxStreams: input.maxStreams ?? SESSION_MAX_STREAMS,
  });
}

/** Serve one session until it ends; resolves with what it carried. */
export async function serveDeviceSession(input: DeviceSessionOptions): Promise<DeviceSessionOutcome> {
  const o = deviceSessionOptions(input);
  // The chosen byte must be written before HTTP/2 takes the socket over (a write still in flight
  // on the TLS handle would complete into the HTTP/2 session's bookkeeping).
  // Streams carry small request/answer exchanges: no Nagle delay on the channel.
  (o.channel as Partial<Socket>).setNoDelay?.(true);
  // Half-close is per stream (END_STREAM): the channel's end means the client is gone.
  o.channel.allowHalfOpen = false;
  await new Promise<void>((resolve, reject) => o.channel.write(Buffer.of(TUNNEL_CHOSEN_BYTE), (err) => (err ? reject(err) : resolve())));
  const session = performServerHandshake(o.channel as Socket, {
    settings: { maxConcurrentStreams: o.maxStreams, initialWindowSize: SESSION_STREAM_WINDOW_BYTES, enablePush: false },
    maxHeaderListPairs: 16,
    maxSendHeaderBlockLength: SESSION_MAX_HEADER_BYTES,
    maxSessionMemory: 64,
    peerMaxConcurrentStreams: o.maxStreams,
  });
  let streams = 0;
  let refused = 0;
  let toClient = 0;
  let fromClient = 0;
  let open = 0;
  const log = o.logger;
  const { idle, busy } = createIdleClose(o.idleMs, log, () => session.close());

  function refuse(stream: ServerHttp2Stream, status: StatusValue, why: string, service: string): void {
    refused++;
    o.count?.(refusalCounter(status));
    log.warn({ service, status }, `stream refused: ${why}`);
    // Bytes the client sent with its CONNECT (an early stream) are discarded, never read.
    stream.resume();
    if (!stream.destroyed) stream.respond(streamAnswer(status), { endStream: true });
  }

  async function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    open++;
    busy();
    stream.once('close', () => {
      if (--open === 0 && !session.closed) idle();
    });
    stream.on('error', () => undefined); // a reset stream is the client's choice; join() ends the rest
    const service = headers[':authority'];
    if (headers[':method'] !== 'CONNECT' || typeof service !== 'string' || !SERVICE_NAME_PATTERN.test(service)) {
      return refuse(stream, Status.BAD_REQUEST, 'not a CONNECT naming a service', String(service));
    }
    // Authorisation per stream: the allow-list as it is now.
    const target = o.services().get(service);
    if (!target) return refuse(stream, Status.SERVICE_REFUSED, `service ${service} is not in the allow-list`, service);
    let svc: Socket;
    try {
      svc = await o.connectService(target, o.connectTimeoutMs);
    } catch (err) {
      return refuse(stream, Status.SERVICE_UNAVAILABLE, (err as Error).message, service);
    }
    if (stream.destroyed || stream.closed) {
      svc.destroy();
      return;
    }
    svc.setNoDelay(true);
    streams++;
    stream.respond(streamAnswer(Status.OK));
    svc.resume();
    const r = await join(stream, svc);
    fromClient += r.bytesAtoB;
    toClient += r.bytesBtoA;
  }

  const onAbort = (): void => void session.destroy();
  o.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve) => {
      session.on('stream', (stream, headers) =>
        onStream(stream, headers).catch((err: Error) => {
          // E.g. the stream was reset while we answered: that stream only.
          log.info({ err: err.message }, 'stream failed');
          stream.destroy();
        }),
      );
      session.on('error', (err) => log.info({ err: err.message }, 'session error'));
      session.once('close', () => resolve());
      o.channel.once('close', () => session.destroy());
      // One session carries many streams: let it take more than one stream's window at once.
      const widen = (s: Http2Session): void => {
        try {
          s.setLocalWindowSize(SESSION_WINDOW_BYTES);
        } catch {
          /* closed already */
        }
      };
      if (session.connecting) session.once('connect', widen);
      else widen(session);
      if (o.signal.aborted) onAbort();
      idle();
    });
  } finally {
    busy();
    o.signal.removeEventListener('abort', onAbort);
    if (!o.channel.destroyed) o.channel.destroy();
  }
  log.info({ streams, refused, bytesToClient: toClient, bytesFromClient: fromClient }, 'S209 session ended');
  return { streams, refused, bytesToClient: toClient, bytesFromClient: fromClient };
}
