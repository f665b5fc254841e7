/**
 * What client.open() hands out (agent/client/client.ts): streams of one live session with the device
 * (agent/session: one rendezvous, then a stream per open), or a tunnel per connection when sessions
 * are off (sessionIdleMs 0) or the device does not offer them (an old device refuses the session
 * service; the refusal is remembered). openLive() is the cheap way for a busy caller (`--listen`):
 * a stream of the session that is up now, at once, with no promise and no abort signal to make.
 */
import type { Logger } from 'pino';
import { ErrorCodes, isPeerlinkError } from '../common/errors.js';
import { rejectUnknownKeys } from '../common/options.js';
import { MUX_SERVICE, SESSION_SERVICE, StreamRefusedError } from '../protocol/session-streams.js';
import type { Socket } from 'node:net';
import { startClientSession } from '../session/client-session.js';
import { startMuxClientSession } from '../session/mux-client-session.js';
import { createSessionPool, type SessionPool } from '../session/session-pool.js';
import type { OpenOptions, Tunnel } from './client.js';

export interface ClientStreamsOptions {
  /** A session is closed after this long without a stream; 0: no sessions, a tunnel per open. */
  readonly sessionIdleMs: number;
  /** How long the device has to answer a stream. */
  readonly peerTimeoutMs: number;
  /** A new tunnel (a rendezvous) to `service`: a session's channel, or a connection of its own. */
  readonly openTunnel: (service: string, signal?: AbortSignal) => Promise<Tunnel>;
  readonly logger: Logger;
}

export interface ClientStreams {
  open(service: string, signal?: AbortSignal, options?: OpenOptions): Promise<Tunnel>;
  /** A stream of the session that is up now, handed over at once (early, see OpenOptions); null when none is up. */
  openLive(service: string): Tunnel | null;
  /** `sock` glued to a stream of the mux session that is up now (see Client.attachLive); false: openLive() or open(). */
  attachLive(service: string, sock: Socket, onReset: (err: Error) => void): boolean;
  stop(): Promise<void>;
}

const LIVE = ' (a stream of the live session)';

export function createClientStreams(input: ClientStreamsOptions): ClientStreams {
  rejectUnknownKeys('client streams options', input, ['sessionIdleMs', 'peerTimeoutMs', 'openTunnel', 'logger']);
  const o = Object.freeze({ ...input });
  let sessionsRefused = false;
  // A device from before the mux refuses its service: then HTTP/2 sessions (asked once).
  let muxRefused = false;
  const pool: SessionPool<Tunnel> | null =
    o.sessionIdleMs > 0
      ? createSessionPool<Tunnel>({
          idleMs: o.sessionIdleMs,
          logger: o.logger,
          connect: async (signal, onIdle) => {
            if (!muxRefused) {
              try {
                const t = await o.openTunnel(MUX_SERVICE, signal);
                return {
                  session: startMuxClientSession({ channel: t.stream, openTimeoutMs: o.peerTimeoutMs, onIdle, logger: o.logger }),
                  info: t,
                };
              } catch (err) {
                if (!isPeerlinkError(err, ErrorCodes.SERVICE_REFUSED)) throw err;
                muxRefused = true;
                o.logger.info('the device does not offer mux sessions; asking for an HTTP/2 session');
              }
            }
            const t = await o.openTunnel(SESSION_SERVICE, signal);
            return {
              session: startClientSession({ channel: t.stream, openTimeoutMs: o.peerTimeoutMs, onIdle, logger: o.logger }),
              info: t,
            };
          },
        })
      : null;

  async function open(service: string, signal?: AbortSignal, options: OpenOptions = {}): Promise<Tunnel> {
    if (!pool || sessionsRefused) return o.openTunnel(service, signal);
    const t0 = performance.now();
    try {
      const { stream, info, reused } = await pool.stream(service, signal, options.early === true);
      return { stream, via: info.via, path: reused ? `${info.path}${LIVE}` : info.path, connectMs: performance.now() - t0, reused };
    } catch (err) {
      // An old device does not know the session service: a tunnel per connection, as before.
      if (!isPeerlinkError(err, ErrorCodes.SERVICE_REFUSED) || err instanceof StreamRefusedError) throw err;
      sessionsRefused = true;
      o.logger.warn('the device does not offer sessions with streams; opening a tunnel per connection');
      return o.openTunnel(service, signal);
    }
  }

  function openLive(service: string): Tunnel | null {
    if (!pool || sessionsRefused) return null;
    const got = pool.streamNow(service);
    if (!got) return null;
    return { stream: got.stream, via: got.info.via, path: `${got.info.path}${LIVE}`, connectMs: 0, reused: true };
  }

  function attachLive(service: string, sock: Socket, onReset: (err: Error) => void): boolean {
    return pool !== null && !sessionsRefused && pool.attachNow(service, sock, onReset);
  }

  return {
    open,
    openLive,
    attachLive,
    stop: async () => void (await pool?.stop()),
  };
}
