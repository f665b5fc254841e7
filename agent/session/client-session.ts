/**
 * The client's end of a session with streams (agent/protocol/session-streams.ts): an HTTP/2
 * client session over the end-to-end channel, once the device has chosen it. open(service) is an
 * HTTP/2 CONNECT on the live channel: no server work, one round trip to the device (which
 * connects its local service before it answers). Each stream has its own flow-control window,
 * so a stream whose reader stops does not stall the others.
 */
import { connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { rejectUnknownKeys } from '../common/options.js';
import {
  readStreamAnswer,
  SESSION_MAX_HEADER_BYTES,
  SESSION_MAX_STREAMS,
  SESSION_STREAM_WINDOW_BYTES,
  SESSION_WINDOW_BYTES,
} from '../protocol/session-streams.js';
import { createAnswerDeadlines } from './answer-deadlines.js';

export interface ClientSessionOptions {
  /** The end-to-end channel, after the path-chosen byte. */
  readonly channel: Duplex;
  /** How long the device has to answer a stream (it connects its service first). */
  readonly openTimeoutMs: number;
  /** Called each time the last open stream closes. */
  readonly onIdle?: () => void;
  readonly logger: Logger;
}

export interface ClientSession {
  /**
   * A stream to the device's service, or StreamRefusedError (the session stays up). `early`: the
   * stream is handed over as soon as its CONNECT is sent, so its first bytes travel with it (a
   * round trip less); a refusal then destroys the stream with the StreamRefusedError (the device
   * discards what was sent), a missing answer with PEER_TIMEOUT.
   */
  open(service: string, signal?: AbortSignal, early?: boolean): Promise<Duplex>;
  /** An early stream (as open's `early`), at once: nothing to wait for; TUNNEL_BROKEN when the session has ended. */
  openEarly(service: string): Duplex;
  /** Streams open (or being opened) now. */
  active(): number;
  /** Whether new streams may be opened (not closed, not going away). */
  alive(): boolean;
  /** Resolves when the session has ended, for whatever reason. */
  readonly closed: Promise<void>;
  /** Close: open streams may finish (graceful); `destroy` cuts them. */
  close(how?: 'graceful' | 'destroy'): Promise<void>;
}

export function startClientSession(input: ClientSessionOptions): ClientSession {
  rejectUnknownKeys('client session options', input, ['channel', 'openTimeoutMs', 'onIdle', 'logger']);
  const o = Object.freeze({ ...input });
  // The client's end is a TLS server socket made with `new TLSSocket(carrier, { isServer })`, whose
  // handshake is done (the chosen byte came over it) but whose `secureConnecting` stays true:
  // http2 would wait for a 'secureConnect' that such a socket never emits.
  const tlsState = o.channel as Duplex & { secureConnecting?: boolean };
  if (tlsState.secureConnecting) tlsState.secureConnecting = false;
  // Streams carry small request/answer exchanges: no Nagle delay on the channel.
  (o.channel as Duplex & { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  // Half-close is per stream (END_STREAM): the channel's end means the device is gone, and a
  // half-open channel would leave the session (and every local connection on it) waiting.
  o.channel.allowHalfOpen = false;
  const session: ClientHttp2Session = h2connect('http://peerlink.invalid', {
    createConnection: () => o.channel as never,
    settings: { maxConcurrentStreams: SESSION_MAX_STREAMS, initialWindowSize: SESSION_STREAM_WINDOW_BYTES, enablePush: false },
    maxHeaderListPairs: 16,
    maxSendHeaderBlockLength: SESSION_MAX_HEADER_BYTES,
    maxSessionMemory: 64,
    peerMaxConcurrentStreams: SESSION_MAX_STREAMS,
  });
  let ended = false;
  let goingAway = false;
  let open = 0;
  const closed = new Promise<void>((resolve) =>
    session.once('close', () => {
      ended = true;
      unanswered.clear();
      resolve();
    }),
  );
  session.on('error', (err) => o.logger.info({ err: err.message }, 'session error'));
  o.channel.once('close', () => session.destroy());
  session.on('goaway', () => (goingAway = true));
  session.once('connect', () => {
    try {
      session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    } catch {
      /* closed already */
    }
  });

  /** A CONNECT for `service` on the session, counted as open until it closes. */
  function request(service: string): ClientHttp2Stream {
    if (ended || goingAway || session.destroyed || session.closed) {
      throw new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, 'the session to the device has ended');
    }
    let req: ClientHttp2Stream;
    try {
      req = session.request({ ':method': 'CONNECT', ':authority': service }, { endStream: false });
    } catch (err) {
      throw new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, `the session to the device has ended: ${(err as Error).message}`, { cause: err });
    }
    open++;
    req.once('close', () => {
      unanswered.delete(req);
      if (--open === 0 && !ended) o.onIdle?.();
    });
    return req;
  }

  function open1(service: string, signal?: AbortSignal, early = false): Promise<Duplex> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    let req: ClientHttp2Stream;
    try {
      req = request(service);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (early) return Promise.resolve(answerLater(req, service));
    return new Promise<Duplex>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          fail(
            new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `the device did not answer the stream to ${service} within ${o.openTimeoutMs} ms`),
          ),
        o.openTimeoutMs,
      );
      const onAbort = (): void => fail(abortError(signal!));
      const onClose = (): void =>
        fail(
          new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, `the stream to ${service} closed before the device answered (code ${req.rstCode})`),
        );
      const onError = (err: Error): void =>
        fail(new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, `the stream to ${service} failed: ${err.message}`, { cause: err }));
      function cleanup(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        req.off('close', onClose);
        req.off('error', onError);
      }
      function fail(err: Error): void {
        cleanup();
        req.on('error', () => undefined);
        if (!req.destroyed) req.close(h2.NGHTTP2_CANCEL);
        reject(err);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      req.once('close', onClose);
      req.once('error', onError);
      req.once('response', (headers) => {
        const refusal = readStreamAnswer(headers, service);
        if (refusal) return fail(refusal);
        cleanup();
        resolve(req);
      });
    });
  }

  // Early streams the device has not answered yet (answer-deadlines.ts).
  const unanswered = createAnswerDeadlines<ClientHttp2Stream>(o.openTimeoutMs, (req, service) =>
    req.destroy(
      new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `the device did not answer the stream to ${service} within ${o.openTimeoutMs} ms`),
    ),
  );

  /** An early stream: the device's answer arrives while its bytes flow; a refusal or no answer ends it. */
  function answerLater(req: ClientHttp2Stream, service: string): Duplex {
    unanswered.add(req, service);
    req.once('response', (headers) => {
      unanswered.delete(req);
      const refusal = readStreamAnswer(headers, service);
      if (refusal) req.destroy(refusal);
    });
    return req;
  }

  return {
    open: open1,
    openEarly: (service) => answerLater(request(service), service),
    active: () => open,
    alive: () => !ended && !goingAway && !session.destroyed && !session.closed,
    closed,
    async close(how = 'graceful') {
      if (ended) return;
      if (how === 'destroy') session.destroy();
      else session.close();
      await closed;
    },
  };
}
