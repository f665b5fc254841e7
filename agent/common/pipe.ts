/**
 * Join two byte streams both ways (S209). Half-close is passed through (so `ssh` and HTTP
 * clients that shut down writing still get their answer); an error on either side destroys both.
 */
import type { Duplex } from 'node:stream';

export interface JoinResult {
  readonly bytesAtoB: number;
  readonly bytesBtoA: number;
}

export function join(a: Duplex, b: Duplex): Promise<JoinResult> {
  return new Promise((resolve) => {
    let aToB = 0;
    let bToA = 0;
    let closed = 0;
    const done = (): void => {
      if (++closed === 2) resolve({ bytesAtoB: aToB, bytesBtoA: bToA });
    };
    a.on('data', (d: Buffer) => (aToB += d.length));
    b.on('data', (d: Buffer) => (bToA += d.length));
    a.pipe(b);
    b.pipe(a);
    const fail = (): void => {
      a.destroy();
      b.destroy();
    };
    a.once('error', fail);
    b.once('error', fail);
    a.once('close', done);
    b.once('close', done);
    // A side that closes without having ended cleanly (reset, destroy) takes the other with it.
    a.once('close', () => {
      if (!a.readableEnded) b.destroy();
    });
    b.once('close', () => {
      if (!b.readableEnded) a.destroy();
    });
  });
}
