/**
 * The device's kept connection to the server (issue 15): after a request's verdict the agent may
 * keep that attach connection for DEVICE_KEEP_IDLE_MS (server.keep_idle_ms), so that the next
 * request reaches it there (DEVICE_WAKE, what a UDP notification carries) without a notification
 * and without a new TLS handshake. The wake is checked exactly as a UDP one (P9: agent.ts), and
 * the attach for it is a new DEVICE_ATTACH whose proof is bound to this TLS session and the new
 * request ID. At most DEVICE_KEEP_MAX connections are kept (the newest; the oldest is closed past
 * it), so that requests in flight together each find one (otherwise each but one would attach with
 * a new TLS connection); and only while the device is in use: idle for its time, each is closed
 * (so an idle device still costs the server no connection).
 */
import type { TLSSocket } from 'node:tls';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { ErrorCodes, isPeerlinkError } from '../common/errors.js';

/** How long a device keeps its attach connection after a request, by default (server.keep_idle_ms). */
export const DEVICE_KEEP_IDLE_MS = 60_000;
/** Connections kept at once: as many as requests are usually in flight together (the server keeps as many, KEPT_PER_DEVICE). */
export const DEVICE_KEEP_MAX = 8;

/** A kept connection to the server, handed to the next request's session. */
export interface ServerConnection {
  readonly tls: TLSSocket;
  readonly channel: FrameChannel;
}

export type DeviceWake = Extract<Frame, { type: typeof FrameType.DEVICE_WAKE }>;

export interface KeptConnection {
  /** Keep `conn` (after its verdict and DEVICE_IDLE) for `idleMs`; past DEVICE_KEEP_MAX the oldest kept is closed. */
  keep(conn: ServerConnection, idleMs: number): void;
  /** Whether a connection is kept now (idle, waiting for a wake). */
  held(): boolean;
  /** Connections kept now. */
  count(): number;
  /** Close every kept connection. */
  close(): void;
}

export interface KeptConnectionOptions {
  /** A wake came over the kept connection: it is no longer kept; the callee owns it. */
  readonly onWake: (wake: DeviceWake, conn: ServerConnection) => void;
  /** The connection was closed after its idle time (by us), or by the server. */
  readonly onClosed?: (why: 'idle' | 'server' | 'unexpected') => void;
}

export function createKeptConnection(o: KeptConnectionOptions): KeptConnection {
  /** Oldest first. */
  const kept: { conn: ServerConnection; taken: AbortController }[] = [];

  function remove(entry: (typeof kept)[number]): void {
    const i = kept.indexOf(entry);
    if (i >= 0) kept.splice(i, 1);
  }
  function release(entry: (typeof kept)[number]): void {
    remove(entry);
    entry.taken.abort();
    entry.conn.channel.close();
  }

  return {
    keep(conn, idleMs) {
      while (kept.length >= DEVICE_KEEP_MAX) release(kept[0]!);
      const entry = { conn, taken: new AbortController() };
      kept.push(entry);
      // The idle deadline is this wait's own: nothing by then, and the connection is closed.
      conn.channel.next(idleMs, entry.taken.signal).then(
        (f) => {
          if (entry.taken.signal.aborted) return;
          remove(entry);
          if (f.type === FrameType.DEVICE_WAKE) return o.onWake(f, conn);
          o.onClosed?.('unexpected');
          conn.channel.close();
        },
        (err: unknown) => {
          if (entry.taken.signal.aborted) return;
          remove(entry);
          o.onClosed?.(isPeerlinkError(err) && err.code === ErrorCodes.PEER_TIMEOUT ? 'idle' : 'server');
          conn.channel.close();
        },
      );
    },
    held: () => kept.length > 0,
    count: () => kept.length,
    close() {
      for (const e of [...kept]) release(e);
    },
  };
}
