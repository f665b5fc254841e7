/**
 * The one write queue of a mux session (mux-session.ts): frames queued while the event loop polls
 * leave together at setImmediate, in one channel write, so many streams share TLS records and
 * system calls. A peer that does not read what it asked for is detected here.
 */
import type { Duplex } from 'node:stream';
import { MUX_MAX_FRAME_BYTES, MUX_STREAM_WINDOW_BYTES, muxHeader } from '../protocol/mux-frames.js';
import { SESSION_MAX_STREAMS } from '../protocol/session-streams.js';

/** What may wait in the channel's buffer, unread by the peer: the streams' windows and some. */
const MUX_MAX_QUEUED_BYTES = SESSION_MAX_STREAMS * MUX_STREAM_WINDOW_BYTES + 8 * 1024 * 1024;

export interface MuxWriter {
  /** Out at the next setImmediate, with what else is queued by then. */
  queue(b: Buffer): void;
  /** A frame without payload (mux-frames.ts muxHeader). */
  control(type: number, flags: number, id: number, value: number): void;
  /** What is queued leaves now. */
  flush(): void;
}

/**
 * `ended`: the session is over (nothing more is written). `stuck`: the peer does not read (more
 * than the windows allow waits in the channel's buffer); the session must end.
 */
export function createMuxWriter(channel: Duplex, ended: () => boolean, stuck: (queuedBytes: number) => void): MuxWriter {
  let out: Buffer[] = [];
  let outBytes = 0;
  let flushing = false;

  function flush(): void {
    flushing = false;
    if (ended() || out.length === 0) return;
    const bufs = out;
    const n = outBytes;
    out = [];
    outBytes = 0;
    // The windows bound what streams may queue (128 x 256 KiB); past that the peer is not reading
    // what it asked for (refusals, resets, control frames): end the session rather than hold more.
    if (channel.writableLength > MUX_MAX_QUEUED_BYTES) return stuck(channel.writableLength);
    if (bufs.length === 1) channel.write(bufs[0]);
    else if (n <= 4 * MUX_MAX_FRAME_BYTES) channel.write(Buffer.concat(bufs, n));
    else {
      channel.cork();
      for (const b of bufs) channel.write(b);
      channel.uncork();
    }
  }
  function queue(b: Buffer): void {
    out.push(b);
    outBytes += b.length;
    if (!flushing) {
      flushing = true;
      setImmediate(flush);
    }
  }
  return { queue, flush, control: (type, flags, id, value) => queue(muxHeader(type, flags, id, value)) };
}
