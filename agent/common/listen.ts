/**
 * Bind a server or a UDP socket and wait until it is bound. A bind error (the port is taken, the
 * address does not exist) rejects the start instead of surfacing later as an 'error' event.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP, type Server } from 'node:net';

export function listenOn(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** `host` undefined: every local address. */
export function bindUdp(socket: UdpSocket, port: number, host?: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    const bound = (): void => {
      socket.off('error', reject);
      resolve();
    };
    if (host === undefined) socket.bind(port, bound);
    else socket.bind(port, host, bound);
  });
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * An IP literal needs no resolver: answer at once. Node's default (`dns.lookup`) defers even a
 * literal by a tick, for every datagram sent; a server answering a fleet's registrations pays that
 * per packet (`npm run bench -- server --only udp`). Names still go to `dns.lookup`.
 */
function literalLookup(host: string, options: LookupOneOptions, callback: LookupCallback): void {
  const family = isIP(host);
  if (family !== 0) callback(null, host, family);
  else dnsLookup(host, options, callback);
}

/** A UDP socket for a server bound to `host` (its family follows the host's). */
export function createServerUdpSocket(host: string): UdpSocket {
  return createSocket({ type: isIP(host) === 6 ? 'udp6' : 'udp4', lookup: literalLookup as never });
}
