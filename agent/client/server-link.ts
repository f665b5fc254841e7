/**
 * The client's TLS connection to the rendezvous server, kept between connection requests (like
 * HTTP keep-alive): the next request goes over it, with no TLS handshake at either end and no
 * wait for a HELLO. The server says it will take another request by sending a fresh HELLO after
 * its answer (server/client-connection.ts); a connection without one (an older server, one at its
 * request cap or stopping) is closed. Idle connections are unref()ed (they never hold the
 * process) and closed after `keepMs`, when the server closes them, or at stop().
 */
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../common/clock.js';
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';
import { connectToServer, type ServerTlsOptions } from '../rendezvous/server-tls.js';

/** How long the client keeps its idle connection to the server (the `serverKeepMs` default). */
export const SERVER_KEEP_IDLE_MS = 30_000;
/**
 * Idle connections kept at once: requests made in parallel each need one (a client that makes
 * one at a time keeps one). Bounded: beyond it a connection is closed after its answer.
 */
export const SERVER_KEEP_MAX_IDLE = 8;

/** The server's connection ends before its answer (killed, restarted): a retry will do. */
export const SERVER_WENT_AWAY = {
  code: ErrorCodes.SERVER_UNREACHABLE,
  message: 'the rendezvous server closed the connection before answering (stopped or restarted?); try again',
} as const;

/** A kept connection died under a request before any answer: the caller retries once on a new one. */
export class KeptConnectionLost extends PeerlinkError {
  constructor(cause: unknown) {
    super(ErrorCodes.SERVER_UNREACHABLE, SERVER_WENT_AWAY.message, { cause });
  }
}

export interface ServerLinkOptions {
  readonly server: Omit<ServerTlsOptions, 'bindLocal' | 'signal' | 'family' | 'timeoutMs' | 'localAddress' | 'resume'>;
  /** 0: a connection per request. */
  readonly keepMs: number;
  /** The HELLO of a new connection must come within this. */
  readonly helloTimeoutMs: number;
  readonly clock: Clock;
}

/** A connection ready for one CONNECT_REQUEST. */
export interface LinkConnection {
  readonly tls: TLSSocket;
  readonly channel: FrameChannel;
  /** Kept from an earlier request (no handshake). */
  readonly reused: boolean;
  /** The server's time now, from its last HELLO on this connection plus the time since. */
  serverNow(): number;
}

export interface ServerLink {
  /** An idle kept connection, or (none, or `fresh`) a new one once its HELLO came. */
  acquire(signal: AbortSignal | undefined, fresh: boolean): Promise<LinkConnection>;
  /** The request on it has its answer: keep it for the next one if the server offers that, else close it; whether kept. */
  release(c: LinkConnection): boolean;
  /** Close it (its request failed). */
  discard(c: LinkConnection): void;
  /** Close the idle connections (the client stops). */
  stop(): void;
  /** Idle connections kept now. */
  readonly idle: number;
}

interface Conn extends LinkConnection {
  reused: boolean;
  helloServerMs: number;
  helloAtMs: number;
  timer: NodeJS.Timeout | undefined;
  generation: number;
}

export function createServerLink(o: ServerLinkOptions): ServerLink {
  const idle: Conn[] = [];
  // Bumped by stop(): a connection in use across a stop() is closed at its release, not kept.
  let generation = 0;

  const unkeep = (c: Conn): void => {
    clearTimeout(c.timer);
    const i = idle.indexOf(c);
    if (i >= 0) idle.splice(i, 1);
  };
  const close = (c: Conn): void => {
    unkeep(c);
    c.channel.close();
  };

  function make(tls: TLSSocket, channel: FrameChannel, serverMs: number, reused: boolean): Conn {
    const c: Conn = {
      tls,
      channel,
      reused,
      helloServerMs: serverMs,
      helloAtMs: performance.now(),
      timer: undefined,
      generation,
      serverNow: () => c.helloServerMs + Math.round(performance.now() - c.helloAtMs),
    };
    tls.once('close', () => unkeep(c));
    // The server half-closed an idle one (its idle bound, a restart): nothing more will come.
    tls.once('end', () => idle.includes(c) && close(c));
    // Reported through the channel to a request; an idle connection's error just closes it.
    tls.on('error', () => undefined);
    return c;
  }

  async function fresh(signal: AbortSignal | undefined): Promise<Conn> {
    // Bound explicitly: a hole punch leaves later from this port, whose NAT mapping the server sees.
    const tls = await connectToServer({ ...o.server, ...(signal ? { signal } : {}), bindLocal: true });
    const channel = new FrameChannel(tls, SERVER_WENT_AWAY);
    try {
      const hello = await channel.next(o.helloTimeoutMs, signal);
      // Use the server's clock so a client with a wrong clock still makes fresh requests.
      return make(tls, channel, hello.type === FrameType.HELLO ? hello.serverTimeMs : o.clock.now(), false);
    } catch (err) {
      tls.destroy();
      throw err;
    }
  }

  return {
    async acquire(signal, wantFresh) {
      while (!wantFresh && idle.length > 0) {
        const c = idle.pop()!;
        unkeep(c);
        // The server's HELLO, queued by the channel, says it takes another request here; a closed
        // connection (idle at the server too long, a restart) fails at once: a new one, then.
        const hello = c.tls.destroyed || c.tls.readableEnded ? null : await c.channel.next(0).catch(() => null);
        if (hello?.type !== FrameType.HELLO || !c.tls.writable) {
          c.channel.close();
          continue;
        }
        c.helloServerMs = hello.serverTimeMs;
        c.reused = true;
        c.tls.ref();
        return c;
      }
      return fresh(signal);
    },
    release(lc) {
      const c = lc as Conn;
      if (o.keepMs === 0 || c.generation !== generation || idle.length >= SERVER_KEEP_MAX_IDLE || c.tls.destroyed) {
        close(c);
        return false;
      }
      // The server's HELLO follows its answer at once if it keeps the connection (the channel
      // queues it; its time counts from now); an older server closes it instead. Either is seen
      // at the next acquire.
      c.helloAtMs = performance.now();
      c.tls.unref();
      c.timer = setTimeout(() => close(c), o.keepMs);
      c.timer.unref();
      idle.push(c);
      return true;
    },
    discard(lc) {
      const c = lc as Conn;
      close(c);
    },
    stop() {
      generation++;
      for (const c of [...idle]) close(c);
    },
    get idle() {
      return idle.length;
    },
  };
}
