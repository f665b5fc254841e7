/**
 * One live session to a device, shared by every stream the client opens (client.open() with
 * sessionIdleMs, and so `peerlink connect --listen`). The first stream makes the session (one
 * rendezvous); later streams ride it. A session that dies is replaced by the next stream that
 * needs one; a session with no stream open for `idleMs` is closed, so an idle client holds
 * nothing at the device. Concurrent streams wait for the same session being made.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { abortError, ErrorCodes, isPeerlinkError, PeerlinkError } from '../common/errors.js';
import { Counters } from '../common/counters.js';
import { rejectUnknownKeys } from '../common/options.js';
import type { Socket } from 'node:net';
import type { ClientSession } from './client-session.js';
import { isMuxClientSession } from './mux-client-session.js';

/** A session made by the pool's `connect`, with how it was reached (for Tunnel.path). */
export interface PooledSession<Info> {
  readonly session: ClientSession;
  readonly info: Info;
}

export interface SessionPoolOptions<Info> {
  /** Make a new session (a rendezvous). `onIdle` must be passed to the session's options. */
  readonly connect: (signal: AbortSignal, onIdle: () => void) => Promise<PooledSession<Info>>;
  /** Close the session after this long without an open stream. */
  readonly idleMs: number;
  readonly logger: Logger;
}

export const SESSION_POOL_COUNTERS = ['sessionsOpened', 'streamsOpened', 'streamsRefused', 'idleClosed', 'sessionsLost'] as const;

export interface SessionPool<Info> {
  /** A stream to `service`; `reused`: it rode a session that was already up; `early`: see ClientSession.open. */
  stream(service: string, signal?: AbortSignal, early?: boolean): Promise<{ stream: Duplex; info: Info; reused: boolean }>;
  /**
   * A stream of the session that is up now, handed over at once (early, see ClientSession.open):
   * no promise, no signal to wait with. Null when no session is up (or it just broke): stream() then.
   */
  streamNow(service: string): { stream: Duplex; info: Info } | null;
  /**
   * Glue `sock` to a stream of the mux session that is up now (mux-client-session.ts attach), at
   * once. False when no session is up, or it is an HTTP/2 one: streamNow() or stream() then.
   */
  attachNow(service: string, sock: Socket, onReset: (err: Error) => void): boolean;
  /** Whether a session is up now. */
  live(): boolean;
  stop(): Promise<void>;
  readonly counters: Counters<(typeof SESSION_POOL_COUNTERS)[number]>;
}

export function createSessionPool<Info>(input: SessionPoolOptions<Info>): SessionPool<Info> {
  rejectUnknownKeys('session pool options', input, ['connect', 'idleMs', 'logger']);
  const o = Object.freeze({ ...input });
  if (!(Number.isInteger(o.idleMs) && o.idleMs > 0))
    throw new PeerlinkError(ErrorCodes.OPTIONS_INVALID, `session pool options: idleMs: expected a positive integer, found ${o.idleMs}`);
  const counters = new Counters(SESSION_POOL_COUNTERS);
  const aborter = new AbortController();
  let current: PooledSession<Info> | null = null;
  let making: Promise<PooledSession<Info>> | null = null;
  let idleTimer: NodeJS.Timeout | null = null;

  function clearIdle(): void {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = null;
  }

  function onIdle(s: PooledSession<Info>): void {
    clearIdle();
    idleTimer = setTimeout(() => {
      idleTimer = null;
      if (current !== s || s.session.active() > 0) return;
      current = null;
      counters.inc('idleClosed');
      o.logger.info({ idleMs: o.idleMs }, 'session idle: closed');
      void s.session.close();
    }, o.idleMs);
    idleTimer.unref();
  }

  function make(): Promise<PooledSession<Info>> {
    if (making) return making;
    let made: PooledSession<Info> | null = null;
    const p = o
      .connect(aborter.signal, () => {
        if (made) onIdle(made);
      })
      .then((s) => {
        if (aborter.signal.aborted) {
          void s.session.close('destroy');
          throw new PeerlinkError(ErrorCodes.ABORTED, 'the session pool is stopped');
        }
        made = s;
        counters.inc('sessionsOpened');
        current = s;
        void s.session.closed.then(() => {
          if (current !== s) return;
          current = null;
          clearIdle();
          counters.inc('sessionsLost');
          o.logger.info('session to the device ended; the next stream makes a new one');
        });
        return s;
      })
      .finally(() => {
        if (making === p) making = null;
      });
    making = p;
    return p;
  }

  /** Wait for `p`, or for the caller's signal (the session being made goes on for the others). */
  function waitFor<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
    if (!signal) return p;
    if (signal.aborted) return Promise.reject(abortError(signal));
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  async function stream(service: string, signal?: AbortSignal, early = false): Promise<{ stream: Duplex; info: Info; reused: boolean }> {
    if (aborter.signal.aborted) throw new PeerlinkError(ErrorCodes.ABORTED, 'the session pool is stopped');
    // A live session that turns out dead (it broke a moment ago) is replaced once.
    for (let attempt = 0; ; attempt++) {
      const live = current !== null && current.session.alive() ? current : null;
      const s = live ?? (await waitFor(make(), signal));
      clearIdle();
      try {
        const st = await s.session.open(service, signal, early);
        counters.inc('streamsOpened');
        return { stream: st, info: s.info, reused: live !== null };
      } catch (err) {
        if (isPeerlinkError(err, ErrorCodes.TUNNEL_BROKEN) && live !== null && attempt === 0) {
          if (current === s) current = null;
          continue;
        }
        if (err instanceof PeerlinkError && err.name === 'StreamRefusedError') counters.inc('streamsRefused');
        if (s.session.active() === 0 && current === s) onIdle(s);
        throw err;
      }
    }
  }

  function streamNow(service: string): { stream: Duplex; info: Info } | null {
    const s = current;
    if (aborter.signal.aborted || s === null || !s.session.alive()) return null;
    let st: Duplex;
    try {
      st = s.session.openEarly(service);
    } catch {
      return null; // it broke a moment ago: stream() replaces it
    }
    clearIdle();
    counters.inc('streamsOpened');
    return { stream: st, info: s.info };
  }

  function attachNow(service: string, sock: Socket, onReset: (err: Error) => void): boolean {
    const s = current;
    if (aborter.signal.aborted || s === null || !isMuxClientSession(s.session) || !s.session.alive()) return false;
    try {
      s.session.attach(service, sock, onReset);
    } catch {
      return false; // it broke a moment ago: stream() replaces it
    }
    clearIdle();
    counters.inc('streamsOpened');
    return true;
  }

  return {
    counters,
    stream,
    streamNow,
    attachNow,
    live: () => current !== null && current.session.alive(),
    async stop() {
      aborter.abort();
      clearIdle();
      const s = current;
      current = null;
      await making?.catch(() => undefined);
      await s?.session.close('destroy');
    },
  };
}
