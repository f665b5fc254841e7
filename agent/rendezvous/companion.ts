/**
 * A companion connection (issue 14, agent/server/companions.ts): after the rendezvous connection
 * is up over one address family, a second one to the same server name over the other family, from
 * a bound port, carrying one frame that ties it to the request. The server notes where it came
 * from and closes it; we keep the local port, which a hole punch of that family then leaves from.
 * Best effort: no other family (an IPv4-only host fails at once with no route), a literal server
 * address, or anything else wrong gives null and the request goes on with its own family.
 */
import { isIPv6, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import { encodeFrame, type Frame } from '../protocol/frames.js';
import { connectToServer, type ServerTlsOptions } from './server-tls.js';

/** How long a companion may take to connect; the request never waits longer than that for it. */
export const COMPANION_TIMEOUT_MS = 2000;
/** A companion the server did not close by then is closed by us. */
const COMPANION_LINGER_MS = 10_000;

/** The other family than the one `main` reached the server over. */
export function otherFamily(main: Socket): 4 | 6 {
  return isIPv6(normalizeAddress(main.remoteAddress ?? '')) ? 4 : 6;
}

/**
 * Open the companion of `main` and send `frame(tls)` on it; resolves with our local endpoint of
 * that connection (its port is the punch port of that family), or null.
 */
export async function openCompanion(
  server: Omit<ServerTlsOptions, 'bindLocal' | 'family' | 'timeoutMs' | 'signal' | 'localAddress'>,
  main: Socket,
  frame: (tls: TLSSocket) => Frame,
  signal?: AbortSignal,
): Promise<Endpoint | null> {
  if (isIP(server.host) !== 0) return null;
  let tls: TLSSocket;
  try {
    tls = await connectToServer({
      ...server,
      family: otherFamily(main),
      bindLocal: true,
      timeoutMs: COMPANION_TIMEOUT_MS,
      ...(signal ? { signal } : {}),
    });
  } catch {
    return null;
  }
  const local = { address: normalizeAddress(tls.localAddress ?? ''), port: tls.localPort ?? 0 };
  tls.on('error', () => undefined);
  const linger = setTimeout(() => tls.destroy(), COMPANION_LINGER_MS);
  linger.unref();
  tls.on('close', () => clearTimeout(linger));
  tls.on('end', () => tls.destroy());
  tls.resume(); // the server's HELLO: not needed
  try {
    tls.write(encodeFrame(frame(tls)));
  } catch {
    tls.destroy();
    return null;
  }
  return local.port ? local : null;
}
