/**
 * The client's end of the end-to-end channel over any carrier (a punched or reverse-dialled TCP
 * connection, or the relay): the client is always the TLS-PSK server, whatever direction the TCP
 * connection was opened in, so one handshake and one key schedule serve every path (P4).
 */
import { keepTunnelAlive } from '../common/tunnel-liveness.js';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { Socket } from 'node:net';
import { tunnelServerContext } from '../protocol/tunnel-tls.js';
import { TUNNEL_KEEPALIVE_MS } from '../protocol/constants.js';
import { pskFor, type Expected } from './peer-listener.js';

export type ExpectedTunnel = Pick<Expected, 'clientNonce' | 'accessKey' | 'equipmentId' | 'service'>;

export function acceptTunnel(
  carrier: Duplex,
  expected: ExpectedTunnel,
  timeoutMs: number,
  signal: AbortSignal,
  what: string,
): Promise<TLSSocket> {
  const inner = new TLSSocket(carrier, {
    isServer: true,
    // TLS 1.3 with TUNNEL_CIPHER only, no resumption, one context per process.
    secureContext: tunnelServerContext(),
    pskCallback: (_socket: TLSSocket, identity: string) => pskFor(expected, identity),
  } as ConstructorParameters<typeof TLSSocket>[1]);
  return new Promise<TLSSocket>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `no end-to-end handshake ${what} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = (): void => fail(abortError(signal));
    function fail(err: Error): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      inner.destroy();
      carrier.destroy();
      reject(err);
    }
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    inner.once('secure', () => {
      if (carrier instanceof Socket) keepTunnelAlive(carrier);
      else (carrier as Partial<Socket>).setKeepAlive?.(true, TUNNEL_KEEPALIVE_MS);
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      inner.off('end', onEarlyEnd);
      inner.removeAllListeners('error');
      inner.on('error', () => undefined); // reported by whoever reads the stream next
      resolve(inner);
    });
    // P10: a carrier that ends before the handshake will never complete it: fail now, not at the timeout.
    const onEarlyEnd = (): void =>
      fail(new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, `the connection ${what} ended before the end-to-end handshake`));
    inner.once('end', onEarlyEnd);
    inner.once('error', (err) =>
      fail(new PeerlinkError(ErrorCodes.AUTH_FAILED, `end-to-end handshake ${what} failed: ${err.message}`, { cause: err })),
    );
  });
}
