/**
 * Bind a server or a UDP socket and wait until it is bound. A bind error (the port is taken, the
 * address does not exist) rejects the start instead of surfacing later as an 'error' event.
 * And the other end: close a server or a socket and wait until it is closed.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';

/**
 * "::" is both families (dual stack: Node clears IPV6_V6ONLY on TCP listeners); on a host without
 * IPv6 at all (EAFNOSUPPORT) it falls back to "0.0.0.0", so the default works everywhere.
 */
export const DUAL_STACK_HOST = '::';

const noIPv6 = (err: unknown): boolean =>
  (err as NodeJS.ErrnoException).code === 'EAFNOSUPPORT' || (err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL';

export async function listenOn(server: Server, port: number, host: string): Promise<void> {
  const once = (h: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: h, ...(h === DUAL_STACK_HOST ? { ipv6Only: false } : {}) }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  try {
    await once(host);
  } catch (err) {
    if (host !== DUAL_STACK_HOST || !noIPv6(err)) throw err;
    await once('0.0.0.0');
  }
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
function literalLookup(host: string, options: LookupOneOptions | number, callback: LookupCallback): void {
  const family = isIP(host);
  // dgram asks with its socket's family (a number): a dual-stack IPv6 socket reaches an IPv4 peer
  // at its v4-mapped address (the registry keeps the plain IPv4 form).
  const want = typeof options === 'number' ? options : options.family;
  if (family === 4 && want === 6) callback(null, `::ffff:${host}`, 6);
  else if (family !== 0) callback(null, host, family);
  else dnsLookup(host, typeof options === 'number' ? { family: options } : options, callback);
}

/**
 * The receive buffer a server asks for on its UDP socket. The kernel's default (rmem_default, often
 * 208 KiB: ~170 datagrams) overflows when a fleet's registrations arrive at a few thousand a second
 * and the event loop stalls for ~100 ms (a GC, a busy core): those datagrams are dropped before the
 * server sees them (`npm run soak` showed it as lost registrations, counted in the kernel's
 * RcvbufErrors). The kernel caps the request at net.core.rmem_max.
 */
export const SERVER_UDP_RECV_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * A UDP socket for a server bound to `host` (its family follows the host's). Bound to "::" it is
 * dual stack (IPv4 peers arrive as ::ffff:a.b.c.d, normalized where they are read) unless the
 * system says otherwise (net.ipv6.bindv6only=1, not Linux's default): docs/paths.md.
 */
function createServerUdpSocket(host: string): UdpSocket {
  return createSocket({
    type: isIP(host) === 6 ? 'udp6' : 'udp4',
    lookup: literalLookup as never,
    recvBufferSize: SERVER_UDP_RECV_BUFFER_BYTES,
  });
}

/**
 * A server's UDP socket, bound, handing each datagram to `onMessage`; socket errors are logged
 * (`what` names the socket) and never thrown.
 */
export async function openServerUdp(
  host: string,
  port: number,
  onMessage: (msg: Buffer, rinfo: RemoteInfo) => void,
  logger: Logger,
  what: string,
): Promise<UdpSocket> {
  const open = async (h: string): Promise<UdpSocket> => {
    const s = createServerUdpSocket(h);
    s.on('message', onMessage);
    s.on('error', (err) => logger.error({ err: err.message }, `${what} error`));
    try {
      await bindUdp(s, port, h);
    } catch (err) {
      s.close();
      throw err;
    }
    return s;
  };
  try {
    return await open(host);
  } catch (err) {
    if (host !== DUAL_STACK_HOST || !noIPv6(err)) throw err;
    logger.warn({ err: (err as Error).message }, `${what}: no IPv6 on this host; IPv4 only`);
    return open('0.0.0.0');
  }
}

/** The address a started UDP socket is bound to; throws when there is none (not started). */
export function boundAddress(socket: UdpSocket | null): { address: string; port: number } {
  if (!socket) throw new Error('not started');
  const a = socket.address();
  return { address: a.address, port: a.port };
}

export function closeUdp(socket: UdpSocket): Promise<void> {
  return new Promise<void>((resolve) => socket.close(() => resolve()));
}

/**
 * After our FIN (a conversation's end, a refusal), how long the peer has to close its side before
 * the connection is destroyed. Defined here, beside its one mechanism, so common/ imports nothing above it.
 */
export const CLOSE_AFTER_END_MS = 2_000;

/**
 * End our side of a connection; a peer that does not close its own within `afterMs` gets it
 * destroyed, so no connection waits on its peer for ever (the timer does not hold the process).
 */
export function endThenDestroy(socket: Duplex, afterMs: number = CLOSE_AFTER_END_MS): void {
  if (socket.destroyed) return;
  socket.end();
  const t = setTimeout(() => socket.destroy(), afterMs);
  t.unref();
  socket.once('close', () => clearTimeout(t));
}

/** Stop accepting, end the connections still open (`open`), and wait until the server is closed. */
export async function closeServer(server: Server, open: Iterable<{ destroy(): void }> = []): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const c of open) c.destroy();
  await closed;
}
