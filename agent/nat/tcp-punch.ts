/**
 * TCP simultaneous open ("hole punching"): both ends connect to each other's public endpoint
 * from the local port their rendezvous connection used. Where both NATs map endpoint-
 * independently, that port keeps its public mapping, each side's SYN opens its own NAT for the
 * other's, and the crossing SYNs make one connection (RFC 793 simultaneous open; RFC 5382
 * REQ-2/REQ-5). A SYN that arrives before the peer's own has left is dropped or refused; the
 * kernel retransmits, and a refused attempt is retried from the same port until the deadline.
 */
import { connect, type Socket } from 'node:net';
import { isIPv6 } from 'node:net';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import type { Endpoint } from '../protocol/address.js';

/** Pause between attempts after a refusal (an RST from the peer's router before its SYN left). */
export const PUNCH_RETRY_MS = 150;

export interface PunchOptions {
  readonly localPort: number;
  readonly remote: Endpoint;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** The unspecified local address of the remote's family (binding it sets SO_REUSEADDR via libuv). */
export function anyAddressFor(remote: string): string {
  return isIPv6(remote) ? '::' : '0.0.0.0';
}

export function punchTcp(o: PunchOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(abortError(o.signal));
    let current: Socket | null = null;
    let retry: NodeJS.Timeout | undefined;
    let attempts = 0;
    let lastError = 'no answer';
    const deadline = setTimeout(
      () => fail(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `hole punch to ${o.remote.address}:${o.remote.port} from port ${o.localPort}: ${lastError} after ${attempts} attempt(s) in ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    const onAbort = (): void => fail(abortError(o.signal!));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    function cleanup(): void {
      clearTimeout(deadline);
      clearTimeout(retry);
      o.signal?.removeEventListener('abort', onAbort);
    }
    function fail(err: Error): void {
      cleanup();
      current?.destroy();
      reject(err);
    }
    function attempt(): void {
      attempts++;
      const s = connect({
        host: o.remote.address,
        port: o.remote.port,
        localAddress: anyAddressFor(o.remote.address),
        localPort: o.localPort,
        allowHalfOpen: true,
      });
      current = s;
      s.once('connect', () => {
        cleanup();
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        lastError = err.code ?? err.message;
        s.destroy();
        if (current === s) current = null;
        retry = setTimeout(attempt, PUNCH_RETRY_MS);
      });
    }
    attempt();
  });
}
