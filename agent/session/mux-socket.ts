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

/** Payloads held for one socket before they are copied into one buffer. */
const HELD_PIECES_MAX = 16;

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
  // A turn's payloads leave in one write, and only one write is in flight at a time: a peer that
  // sends many tiny frames to a socket whose reader stalled cannot make the socket queue one
  // object per frame (the window counts bytes, not frames). Credit is granted back once the
  // socket handed the bytes to the kernel, so a stalled reader holds at most one window.
  let held: Buffer[] = [];
  let heldBytes = 0;
  let scheduled = false;
  let inFlight = false;
  let ending = false;
  const flush = (): void => {
    scheduled = false;
    if (inFlight || sock.destroyed) return;
    if (heldBytes === 0) {
      // The FIN goes after the last held byte.
      if (ending && !sock.writableEnded) sock.end();
      return;
    }
    const n = heldBytes;
    const b = held.length === 1 ? held[0]! : Buffer.concat(held, n);
    held = [];
    heldBytes = 0;
    inFlight = true;
    sock.write(b, (err) => {
      inFlight = false;
      if (err) return;
      if (stRef.st) session.consumed(stRef.st, n);
      if (heldBytes > 0 || ending) flush();
    });
  };
  return {
    data(buf) {
      if (counts) counts.toSocket += buf.length;
      if (!inFlight && !scheduled && heldBytes === 0 && !sock.destroyed) {
        // Nothing waiting: out at once (no turn's delay); what follows in this turn is held.
        held.push(buf);
        heldBytes = buf.length;
        flush();
        return;
      }
      held.push(buf);
      heldBytes += buf.length;
      // Views of the channel's chunks: past a few, copied into one (bounded pieces, bounded retention).
      if (held.length >= HELD_PIECES_MAX) held = [Buffer.concat(held, heldBytes)];
      if (!scheduled && !inFlight) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    end() {
      ending = true;
      if (!inFlight && !scheduled) flush();
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
