/**
 * The reverse strategy's dial, from the client: open TCP to a listening port the device reported
 * (a LISTEN candidate) and name the request with its token; the device's reverse listener
 * (agent/device/reverse-listener.ts) hands the connection to that request's session.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import type { Endpoint } from '../protocol/address.js';

/** Reverse strategy: open TCP to the device's listening port and name the request. */
export function dialDevice(to: Endpoint, token: Buffer, timeoutMs: number, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    // noDelay: the token and the TLS handshake after it are small writes (no Nagle wait between them).
    const s = netConnect({ host: to.address, port: to.port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => fail(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `no answer within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => fail(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    function fail(err: Error): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      s.destroy();
      reject(err);
    }
    s.once('connect', () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      s.removeAllListeners('error');
      s.write(token);
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) =>
      fail(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, err.code ?? err.message, { cause: err })),
    );
  });
}
