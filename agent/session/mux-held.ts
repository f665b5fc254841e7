/**
 * The client's streams past the device's cap (mux-session.ts): the device refuses a stream beyond
 * SESSION_MAX_STREAMS with DEVICE_BUSY, so the client does not send it; it holds it (no open sent,
 * no credit: its source's first read and FIN wait in `pending`, the source paused) until one of
 * its open streams is gone, oldest first, within the stream's answer deadline. Held in the session
 * rather than opened on a second session: no second rendezvous, nor a second session's share of
 * the device, for what is a burst; a stream costs the device nothing while it is held.
 */
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import type { MuxStream } from './mux-stream.js';

/**
 * Streams held at once (each holds at most one read of its source, paused): past it, open() fails
 * at once with DEVICE_BUSY, as the device would refuse it.
 */
export const MUX_HELD_STREAMS_MAX = 512;

export class HeldStreams {
  private readonly held = new Set<MuxStream>();

  get size(): number {
    return this.held.size;
  }
  has(st: MuxStream): boolean {
    return this.held.has(st);
  }
  delete(st: MuxStream): boolean {
    return this.held.delete(st);
  }

  /** Hold `st`: no credit until its open is sent. DEVICE_BUSY when too many wait already. */
  hold(st: MuxStream, openNow: number): void {
    if (this.held.size >= MUX_HELD_STREAMS_MAX)
      throw new PeerlinkError(ErrorCodes.DEVICE_BUSY, `${openNow} streams open and ${this.held.size} waiting: no more on this session`);
    st.sendCredit = 0;
    st.pending = [];
    this.held.add(st);
  }

  /** The oldest held stream, no longer held (its open is for the caller to send). */
  shift(): MuxStream {
    const st = this.held.values().next().value!;
    this.held.delete(st);
    return st;
  }

  /** Every held stream is gone (`done`), told `err`: the session ends or goes away. */
  failAll(err: Error | null, gone: (st: MuxStream) => void): void {
    for (const st of [...this.held]) {
      this.held.delete(st);
      st.done = true;
      gone(st);
      st.sink?.reset(err);
    }
  }
}

/** Why a held stream failed: no slot came free within its deadline. */
export const heldExpired = (service: string, waitMs: number, cap: number): PeerlinkError =>
  new PeerlinkError(
    ErrorCodes.DEVICE_BUSY,
    `no stream of the session came free for ${service} within ${waitMs} ms (${cap} open, the device's cap)`,
  );
