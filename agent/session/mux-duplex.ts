/**
 * A stream of a mux session as a Duplex, for library users (client.open()); `--listen` glues its
 * sockets without one (mux-socket.ts). Writes wait for the peer's credit (the write callback is
 * held until the sink's writable()); bytes read are granted back as the reader takes them (_read).
 */
import { Duplex } from 'node:stream';
import type { MuxSession, MuxSink, MuxStream } from './mux-session.js';

export class MuxDuplex extends Duplex {
  st: MuxStream | null = null;
  private owed = 0;
  private held: ((err?: Error | null) => void) | null = null;
  /** What the session calls for this stream. */
  readonly sink: MuxSink = {
    data: (buf) => {
      if (this.push(buf)) this.session.consumed(this.st!, buf.length);
      else this.owed += buf.length;
    },
    end: () => void this.push(null),
    reset: (err) => void this.destroy(err ?? undefined),
    writable: () => {
      const cb = this.held;
      this.held = null;
      cb?.();
    },
  };

  constructor(private readonly session: MuxSession) {
    super({ allowHalfOpen: true });
  }

  override _read(): void {
    if (this.owed === 0 || !this.st) return;
    const n = this.owed;
    this.owed = 0;
    this.session.consumed(this.st, n);
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.session.send(this.st!, chunk)) cb();
    else this.held = cb;
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.session.finish(this.st!);
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Ended both ways (autoDestroy): what waits for the peer's credit still leaves, then its FIN.
    const ended = err === null && this.writableFinished && this.readableEnded;
    if (this.st && !this.st.done && !ended) this.session.reset(this.st);
    this.held = null;
    cb(err);
  }
}
