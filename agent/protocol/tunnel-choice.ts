/**
 * Path nomination. Several paths may complete the end-to-end handshake for one request (the
 * device's dial, the client's reverse dial, a hole punch, the relay). The device, which completes
 * each handshake first, keeps the first and sends TUNNEL_CHOSEN_BYTE on it before any data; the
 * client keeps the stream that carries the byte and drops the rest. One side decides, so the two
 * ends can never keep different paths, and the byte travels with the device's last handshake
 * flight: no round trip is added.
 */
import type { Duplex } from 'node:stream';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { TUNNEL_CHOSEN_BYTE } from './constants.js';

/** Device side: this stream carries the session. */
export function announceChosen(stream: Duplex): void {
  stream.write(Buffer.of(TUNNEL_CHOSEN_BYTE));
}

/** Client side: resolve with the stream once the device has chosen it; reject if it closes first. */
export function awaitChosen<T extends Duplex>(stream: T, timeoutMs: number, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      stream.destroy();
      return reject(abortError(signal));
    }
    const timer = setTimeout(
      () => fail(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `the device did not choose this path within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = (): void => fail(abortError(signal!));
    const onEnd = (): void => fail(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, 'the device kept another path'));
    const onError = (err: Error): void => fail(err);
    function cleanup(): void {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    }
    function fail(err: Error): void {
      cleanup();
      stream.destroy();
      reject(err);
    }
    function onReadable(): void {
      const b = stream.read(1) as Buffer | null;
      if (b === null) return;
      cleanup();
      if (b[0] !== TUNNEL_CHOSEN_BYTE) {
        stream.destroy();
        reject(new PeerlinkError(ErrorCodes.PROTOCOL, `expected the path-chosen byte, found 0x${b[0]!.toString(16)}`));
        return;
      }
      resolve(stream);
    }
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
