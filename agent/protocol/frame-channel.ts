/**
 * A frame conversation over one TLS socket: send frames, await the next one with a deadline.
 * A protocol error, a close or the deadline rejects the wait; nothing is left dangling.
 */
import type { Duplex } from 'node:stream';
import { ErrorCodes, PeerlinkError, ProtocolError, abortError, type ErrorCode } from '../common/errors.js';

/**
 * What a close before the awaited frame means to the caller. The default is a protocol error; a
 * client waiting for the rendezvous server's answer says instead that the server went away (killed,
 * restarted), which is what a user can act on.
 */
export interface ChannelClosed {
  readonly code: ErrorCode;
  readonly message: string;
}
import { endThenDestroy } from '../common/listen.js';
import { FrameDecoder } from './frame-decoder.js';
import { encodeFrame, FrameType, type Frame } from './frames.js';

export class FrameChannel {
  private readonly decoder = new FrameDecoder();
  private readonly queue: Frame[] = [];
  /** Why no more frames come: an error, or (a close) how to build one, built only when someone asks. */
  private failure: Error | (() => Error) | null = null;
  private waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | null = null;
  /** Frames of these types go to their handler when they arrive, whoever waits (divert()). */
  private readonly diverted = new Map<number, (f: Frame) => void>();

  private readonly onData = (chunk: Buffer): void => {
    if (this.failure) return;
    try {
      for (const f of this.decoder.push(chunk)) {
        this.deliver(f);
        // After RELAY_PAIRED the connection carries the peer's raw bytes: stop decoding frames.
        if (f.type === FrameType.RELAY_PAIRED) {
          this.release();
          return;
        }
      }
    } catch (err) {
      this.fail(err as Error);
      this.socket.destroy();
    }
  };

  constructor(
    readonly socket: Duplex,
    closed?: ChannelClosed,
  ) {
    socket.on('data', this.onData);
    // Built lazily: most connections close with nobody waiting for a frame (measured: an error and
    // its stack trace on every close of the server's connections, ~1% of its CPU per request).
    socket.once('close', () =>
      this.fail(() => new PeerlinkError(closed?.code ?? ErrorCodes.PROTOCOL, closed?.message ?? 'connection closed')),
    );
    // A peer that half-closed sends no more frames: waiting for one would only run out the deadline.
    socket.once('end', () =>
      this.fail(() => new PeerlinkError(closed?.code ?? ErrorCodes.PROTOCOL, closed?.message ?? 'connection closed by the peer')),
    );
    socket.once('error', (err) =>
      this.fail(closed ? new PeerlinkError(closed.code, `${closed.message} (${err.message})`, { cause: err }) : err),
    );
  }

  private deliver(f: Frame): void {
    const divert = this.diverted.get(f.type);
    if (divert) return divert(f);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(f);
    } else {
      this.queue.push(f);
      if (this.queue.length > 4) this.fail(new ProtocolError('frame', 'peer sent frames nobody asked for'));
    }
  }

  private fail(err: Error | (() => Error)): void {
    if (this.failure) return;
    this.failure = err;
    const w = this.waiter;
    this.waiter = null;
    if (w) w.reject(this.failureError());
  }

  /** The failure as an error (built now if it was deferred), the same one for every later wait. */
  private failureError(): Error {
    if (typeof this.failure === 'function') this.failure = this.failure();
    return this.failure!;
  }

  /**
   * Stop reading frames: the socket now carries raw bytes. It is left paused, with any bytes
   * already read past the last frame put back, for the next reader.
   */
  release(): void {
    this.socket.off('data', this.onData);
    this.socket.pause();
    const rest = this.decoder.takeRest();
    if (rest.length > 0) this.socket.unshift(rest);
  }

  /**
   * Frames of `type` go to `handler` as they arrive, never to next(): ones that may come at any time
   * on a connection that carries other exchanges (RELAY_RELEASE, RELAY_NOW). Set again: replaced.
   */
  divert(type: number, handler: (f: Frame) => void): void {
    this.diverted.set(type, handler);
  }

  send(frame: Frame): void {
    if (!this.socket.destroyed) this.socket.write(encodeFrame(frame));
  }

  /**
   * Several frames in one write: one TLS record and one segment instead of one each. On the
   * server, each write of a frame cost more than the frame's work (TLS record, syscall).
   */
  sendAll(frames: readonly Frame[]): void {
    if (this.socket.destroyed) return;
    this.socket.write(frames.length === 1 ? encodeFrame(frames[0]!) : Buffer.concat(frames.map(encodeFrame)));
  }

  /** The next frame; rejects after `timeoutMs`, on abort, on close or on a malformed frame. */
  next(timeoutMs: number, signal?: AbortSignal): Promise<Frame> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failureError());
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        cleanup();
        reject(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const onAbort = (): void => {
        this.waiter = null;
        cleanup();
        reject(abortError(signal!));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiter = {
        resolve: (f) => {
          cleanup();
          resolve(f);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      };
    });
  }

  close(): void {
    // Do not wait for ever for a peer that never closes its side.
    endThenDestroy(this.socket);
  }
}
