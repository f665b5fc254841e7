/**
 * A stream of a mux session glued straight to a net.Socket (`--listen`'s local connection, the
 * device's service connection): no Duplex, no pipe in between. The socket's reads become DATA
 * frames; when the peer's credit runs out the socket is paused until a WINDOW_UPDATE. The peer's
 * bytes are written to the socket, and granted back once the socket took them (at once, or at
 * 'drain' when it is backed up): a socket whose reader stalled holds at most one window of its
 * stream, and the other streams go on. Half-close passes through (FIN <-> 'end').
 */
import type { Socket } from 'node:net';
import type { MuxSession, MuxSink, MuxStream } from './mux-session.js';

export interface GlueCounts {
  toSocket: number;
  fromSocket: number;
}

/**
 * The sink that writes `st`'s bytes to `sock`; then start reading with startSocketReads(). Two
 * steps because the client opens its stream with the sink and the device accepts with one.
 * `onReset`: the stream ended badly (a refusal, a reset, the session gone); the socket is destroyed.
 */
export function socketSink(
  session: MuxSession,
  stRef: { st: MuxStream | null },
  sock: Socket,
  counts: GlueCounts | null,
  onReset?: (err: Error) => void,
): MuxSink {
  let owed = 0;
  let draining = false;
  const onDrain = (): void => {
    draining = false;
    const n = owed;
    owed = 0;
    if (stRef.st) session.consumed(stRef.st, n);
  };
  return {
    data(buf) {
      if (counts) counts.toSocket += buf.length;
      if (sock.write(buf)) {
        session.consumed(stRef.st!, buf.length);
        return;
      }
      owed += buf.length;
      if (!draining) {
        draining = true;
        sock.once('drain', onDrain);
      }
    },
    end() {
      if (!sock.destroyed) sock.end();
    },
    reset(err) {
      if (err) onReset?.(err);
      sock.destroy();
    },
    writable() {
      sock.resume();
    },
  };
}

/** Read `sock` into `st` until it ends; a socket that closes before both directions ended resets the stream. */
export function startSocketReads(session: MuxSession, st: MuxStream, sock: Socket, counts: GlueCounts | null): void {
  sock.on('data', (d: Buffer) => {
    if (counts) counts.fromSocket += d.length;
    if (!session.send(st, d)) sock.pause();
  });
  sock.once('end', () => session.finish(st));
  sock.on('error', () => undefined); // 'close' follows: the stream is reset there
  sock.once('close', (hadError: boolean) => {
    if (st.done) return;
    // Both ways ended cleanly: what still waits for the peer's credit leaves, then its FIN.
    if (!hadError && sock.readableEnded && st.finReceived) return;
    session.reset(st);
  });
  sock.resume();
}
