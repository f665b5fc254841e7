/**
 * The client's end of a mux session (agent/protocol/mux-frames.ts): the same ClientSession as the
 * HTTP/2 one (client-session.ts, kept for older devices), plus attach(): a local socket glued to
 * a new stream with nothing in between (mux-socket.ts), for `--listen`. Every stream is early:
 * its bytes follow its open at once and the device holds them until it has checked the service;
 * open() without `early` waits for the device's answer first, as before.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { rejectUnknownKeys } from '../common/options.js';
import { SESSION_MAX_STREAMS } from '../protocol/session-streams.js';
import type { ClientSession } from './client-session.js';
import { MuxDuplex } from './mux-duplex.js';
import { startMuxSession, type MuxSink } from './mux-session.js';
import { socketSink, startSocketReads } from './mux-socket.js';

export interface MuxClientSession extends ClientSession {
  /**
   * Glue `sock` to a new stream to `service` at once. A refusal, a missing answer or the session's
   * end destroys the socket and calls `onReset` with the reason. Throws TUNNEL_BROKEN when the
   * session has ended.
   */
  attach(service: string, sock: Socket, onReset: (err: Error) => void): void;
}

export interface MuxClientSessionOptions {
  /** The end-to-end channel, after the path-chosen byte. */
  readonly channel: Duplex;
  readonly openTimeoutMs: number;
  readonly onIdle?: () => void;
  readonly logger: Logger;
}

export function startMuxClientSession(input: MuxClientSessionOptions): MuxClientSession {
  rejectUnknownKeys('client session options', input, ['channel', 'openTimeoutMs', 'onIdle', 'logger']);
  const o = Object.freeze({ ...input });
  (o.channel as Duplex & { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  o.channel.allowHalfOpen = false;
  const session = startMuxSession({
    channel: o.channel,
    role: 'client',
    logger: o.logger,
    maxStreams: SESSION_MAX_STREAMS,
    openTimeoutMs: o.openTimeoutMs,
    ...(o.onIdle ? { onIdle: o.onIdle } : {}),
  });

  function openEarly(service: string): Duplex {
    const d = new MuxDuplex(session);
    d.st = session.open(service, d.sink);
    return d;
  }

  /** Wait for the device's answer on a new stream (the stream's data events are held back until then). */
  function openAnswered(service: string, signal?: AbortSignal): Promise<Duplex> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const d = new MuxDuplex(session);
    return new Promise<Duplex>((resolve, reject) => {
      const onAbort = (): void => {
        d.destroy();
        reject(abortError(signal!));
      };
      // The answer is the stream's first WINDOW_UPDATE (ACK) or its RST: watch for either.
      const sink: MuxSink = {
        data: (b) => d.sink.data(b),
        end: () => d.sink.end(),
        reset: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err ?? new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, 'the session was closed'));
          d.destroy(); // nobody listens for its 'error' yet: the caller gets `err`
        },
        writable: () => d.sink.writable(),
      };
      try {
        d.st = session.open(service, sink);
      } catch (err) {
        reject(err as Error);
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      const st = d.st;
      st.onAnswered = () => {
        signal?.removeEventListener('abort', onAbort);
        st.sink = d.sink;
        resolve(d);
      };
    });
  }

  return {
    open: (service, signal, early = false) => {
      try {
        return early ? Promise.resolve(openEarly(service)) : openAnswered(service, signal);
      } catch (err) {
        return Promise.reject(err as Error);
      }
    },
    openEarly,
    attach(service, sock, onReset) {
      const ref = { st: null as ReturnType<typeof session.open> | null };
      const st = session.open(service, socketSink(session, ref, sock, null, onReset));
      ref.st = st;
      startSocketReads(session, st, sock, null);
    },
    active: () => session.active(),
    alive: () => session.alive(),
    closed: session.closed,
    async close(how = 'graceful') {
      session.close(how);
      await session.closed;
    },
  };
}

export const isMuxClientSession = (s: ClientSession): s is MuxClientSession => 'attach' in s;
