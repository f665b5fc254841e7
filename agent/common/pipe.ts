/**
 * Join two byte streams both ways (S209). Half-close is passed through (so `ssh` and HTTP
 * clients that shut down writing still get their answer); an error on either side destroys both.
 *
 * Not Readable.pipe(), for two per-byte costs (issue 15, npm run bench -- server --only tunnel):
 * - TLS hands its plaintext over in 16 KiB chunks (one per record), several in one go, and a TCP
 *   socket with more queued is read 64 KiB at a time, several reads in one turn of the event loop:
 *   written one by one, each is its own write(2) (TLS: its own SSL_write and write(2)) and wakes the
 *   next process of the tunnel once more. The chunks of one turn of the loop are corked and leave in
 *   one writev when the turn's I/O callbacks are done (setImmediate: no timer, no added wait).
 * - pipe() pauses the source as soon as 16 KiB wait in the destination and resumes it on 'drain':
 *   at these rates that is a readStop/readStart (epoll_ctl) pair for nearly every chunk. Here the
 *   source pauses only past a queue bound, still bounded per direction: JOIN_QUEUE_BYTES for a
 *   stream of a session (up to SESSION_MAX_STREAMS of them), TUNNEL_JOIN_QUEUE_BYTES for a whole
 *   tunnel (one per connection, up to the agent's dial.max_concurrent). A pause ends the turn's
 *   batch: with the larger bound a turn's reads leave in one writev rather than four.
 */
import type { Duplex } from 'node:stream';

/** Bytes one direction may hold queued in its destination before its source is paused (a stream of a session). */
export const JOIN_QUEUE_BYTES = 256 * 1024;
/**
 * The same for a whole tunnel (its TLS channel joined to a local socket): larger batches, fewer
 * wake-ups down the tunnel's processes (issue 15, docs/measurements.md: ~9% less CPU per GB than 256 KiB).
 */
export const TUNNEL_JOIN_QUEUE_BYTES = 1024 * 1024;

export interface JoinResult {
  readonly bytesAtoB: number;
  readonly bytesBtoA: number;
}

/**
 * Copy src -> dst until src ends (then end dst), counting through `counted`. Returns what to call
 * when dst closes (join's one 'close' listener per side does: a listener each costs per tunnel).
 */
function copy(src: Duplex, dst: Duplex, queueBytes: number, counted: (n: number) => void): () => void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    dst.uncork();
  };
  let waiting = false;
  const resume = (): void => {
    waiting = false;
    src.resume();
  };
  src.on('data', (d: Buffer) => {
    counted(d.length);
    if (dst.destroyed || dst.writableEnded) return;
    if (!corked) {
      corked = true;
      dst.cork();
      setImmediate(uncork);
    }
    // false: 'drain' will come (Writable promises it), so waiting for it cannot hang.
    if (!dst.write(d) && dst.writableLength >= queueBytes && !waiting) {
      waiting = true;
      src.pause();
      dst.once('drain', resume);
    }
  });
  src.once('end', () => {
    if (!dst.destroyed && !dst.writableEnded) dst.end();
  });
  src.resume();
  // A destination that closes while its source waits for 'drain' will not drain: do not leave the source paused.
  return () => {
    if (waiting) resume();
  };
}

/** `queueBytes`: what each direction may queue at its destination before its source pauses. */
export function join(a: Duplex, b: Duplex, queueBytes: number = JOIN_QUEUE_BYTES): Promise<JoinResult> {
  return new Promise((resolve) => {
    let aToB = 0;
    let bToA = 0;
    let closed = 0;
    const done = (): void => {
      if (++closed === 2) resolve({ bytesAtoB: aToB, bytesBtoA: bToA });
    };
    const intoBClosed = copy(a, b, queueBytes, (n) => (aToB += n));
    const intoAClosed = copy(b, a, queueBytes, (n) => (bToA += n));
    const fail = (): void => {
      a.destroy();
      b.destroy();
    };
    a.once('error', fail);
    b.once('error', fail);
    // A side that closes without having ended cleanly (reset, destroy) takes the other with it.
    a.once('close', () => {
      intoAClosed();
      done();
      if (!a.readableEnded) b.destroy();
    });
    b.once('close', () => {
      intoBClosed();
      done();
      if (!b.readableEnded) a.destroy();
    });
  });
}
