/**
 * Bind a server or a UDP socket and wait until it is bound. A bind error (the port is taken, the
 * address does not exist) rejects the start instead of surfacing later as an 'error' event.
 */
import type { Socket as UdpSocket } from 'node:dgram';
import type { Server } from 'node:net';

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
