/**
 * The relay's byte path (relay.ts): each direction of a paired session copied at most
 * `relay.bytes_per_second`, with back-pressure; and the reset that ends a relayed connection. What
 * is copied is the end-to-end channel's ciphertext (P4): nothing here reads it.
 */
import type { Socket } from 'node:net';

/**
 * Reset (RST) a relayed connection: a FIN would read as an orderly half-close and the far end
 * would wait on. Node's TLSSocket cannot reset itself; the TCP socket beneath it (_parent) can.
 */
export function reset(s: Socket): void {
  const raw = (s as Socket & { _parent?: { resetAndDestroy?: () => void } })._parent ?? s;
  try {
    if (raw?.resetAndDestroy) raw.resetAndDestroy();
  } catch {
    /* fall through to destroy */
  }
  s.destroy();
}

/** Copy a -> b at most `bytesPerSecond`, honouring back-pressure; its timer ends with `a`. */
export function throttledCopy(a: Socket, b: Socket, bytesPerSecond: number, onBytes: (n: number) => void): void {
  let windowStart = Date.now();
  let inWindow = 0;
  let resumeTimer: NodeJS.Timeout | undefined;
  a.on('data', (d: Buffer) => {
    onBytes(d.length);
    const now = Date.now();
    if (now - windowStart >= 1000) {
      windowStart = now;
      inWindow = 0;
    }
    inWindow += d.length;
    const ok = b.write(d);
    if (inWindow >= bytesPerSecond) {
      a.pause();
      clearTimeout(resumeTimer);
      resumeTimer = setTimeout(
        () => {
          windowStart = Date.now();
          inWindow = 0;
          if (ok || b.writableLength === 0) a.resume();
          else b.once('drain', () => a.resume());
        },
        1000 - (now - windowStart),
      );
    } else if (!ok) {
      a.pause();
      b.once('drain', () => a.resume());
    }
  });
  a.once('end', () => b.end());
  a.once('close', () => clearTimeout(resumeTimer));
}
