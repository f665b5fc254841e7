/**
 * TCP simultaneous open ("hole punching"): both ends connect to each other's public endpoint
 * from the local port their rendezvous connection used. Where both NATs map endpoint-
 * independently, that port keeps its public mapping, each side's SYN opens its own NAT for the
 * other's, and the crossing SYNs make one connection (RFC 793 simultaneous open; RFC 5382
 * REQ-2/REQ-5). A SYN that arrives before the peer's own has left is dropped or refused; the
 * kernel retransmits, and a refused attempt is retried from the same port until the deadline.
 *
 * Routers that answer an unsolicited SYN with a reset (OpenWrt's WAN zone) close our own hole as
 * the reset passes back through it: our NAT lets the peer's SYN in only between our SYN leaving
 * and the peer router's reset coming back, one round trip. So after a reset (ECONNREFUSED) the
 * next SYN leaves at once, not after a pause: the hole is then open for all but the moment it
 * takes to send the next SYN, and the two SYNs cross (measured in the NAT lab, docs/nat-lab.md).
 * PUNCH_RESET_ATTEMPTS_MAX bounds the SYNs one punch may send.
 *
 * A refusal from a loopback address is no router's reset: it is the peer's own kernel saying
 * nothing is punching at that port yet, and it comes back within microseconds, so "at once" would
 * spin (issue 15: on a one-machine setup whose device does not punch, the client made about a
 * hundred failed connects, each with its error and stack trace, per connection request while the
 * device's dial was on its way). There the next SYN waits PUNCH_RETRY_MS like after any other error.
 */
import { connect, type Socket } from 'node:net';
import { isIPv4, isIPv6 } from 'node:net';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';

/** Pause between attempts after a refusal (an RST from the peer's router before its SYN left). */
export const PUNCH_RETRY_MS = 150;
/** Attempts one punch may make in all (each refused attempt is one SYN and one reset). */
export const PUNCH_RESET_ATTEMPTS_MAX = 5000;

export interface PunchOptions {
  readonly localPort: number;
  readonly remote: Endpoint;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: no router between us (see above). */
export function isLoopbackAddress(address: string): boolean {
  const a = normalizeAddress(address);
  return a === '::1' || (isIPv4(a) && a.startsWith('127.'));
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
    let retryNow: NodeJS.Immediate | undefined;
    let attempts = 0;
    let lastError = 'no answer';
    const resetsAtOnce = !isLoopbackAddress(o.remote.address);
    const deadline = setTimeout(
      () =>
        fail(
          new PeerlinkError(
            ErrorCodes.PEER_TIMEOUT,
            `hole punch to ${o.remote.address}:${o.remote.port} from port ${o.localPort}: ${lastError} after ${attempts} attempt(s) in ${o.timeoutMs} ms`,
          ),
        ),
      o.timeoutMs,
    );
    const onAbort = (): void => fail(abortError(o.signal!));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    function cleanup(): void {
      clearTimeout(deadline);
      clearTimeout(retry);
      clearImmediate(retryNow);
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
        noDelay: true,
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
        if (attempts >= PUNCH_RESET_ATTEMPTS_MAX)
          return fail(
            new PeerlinkError(
              ErrorCodes.PEER_TIMEOUT,
              `hole punch to ${o.remote.address}:${o.remote.port}: ${lastError} after ${attempts} attempts`,
            ),
          );
        // A router's reset: send the next SYN at once (see above); anything else: pause.
        if (err.code === 'ECONNREFUSED' && resetsAtOnce) retryNow = setImmediate(attempt);
        else retry = setTimeout(attempt, PUNCH_RETRY_MS);
      });
    }
    attempt();
  });
}
