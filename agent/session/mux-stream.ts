/**
 * A stream of a mux session (mux-session.ts): its credit windows and half-close state, and the
 * consumer it reports to. Plain fields, no emitter: a stream costs an object, not a Duplex.
 */
import { MUX_STREAM_WINDOW_BYTES } from '../protocol/mux-frames.js';

/** What a stream's consumer is told. */
export interface MuxSink {
  /** Bytes from the peer; the consumer calls session.consumed() once they are off its hands. */
  data(buf: Buffer): void;
  /** The peer half-closed. */
  end(): void;
  /** The stream is gone (refused, reset, unanswered, or the session ended); null: we closed the session ourselves. */
  reset(err: Error | null): void;
  /** send() returned false before; now there is credit again. */
  writable(): void;
}

export class MuxStream {
  sendCredit = MUX_STREAM_WINDOW_BYTES;
  /** What the peer may still send before we grant more. */
  recvLeft = MUX_STREAM_WINDOW_BYTES;
  unGranted = 0;
  pending: Buffer[] | null = null;
  pendingFin = false;
  finSent = false;
  finReceived = false;
  done = false;
  /** The client got the device's answer, or the device gave it. */
  answered = false;
  sink: MuxSink | null = null;
  /** The device's side, until accept(): bytes that came with the open, and its FIN. */
  early: Buffer[] | null = null;
  /** The client's side: who waits for the device's answer. */
  onAnswered: (() => void) | null = null;
  constructor(
    readonly id: number,
    readonly service: string,
  ) {}
}
