/** Raw TCP connections a hostile peer opens against a listener, and waiting for the listener to close them (P10). */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { LOOPBACK, sleep, type Cleanup } from './harness.js';

export function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: LOOPBACK, port }, () => resolve(s));
    s.on('error', reject);
  });
}

/** Resolves when the other end has closed this socket (we never destroy it ourselves before). */
export function closedByPeer(s: Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

/** Wait for every socket to be closed by the listener, up to `ms`; then close what is left from our side. Returns how many were left. */
export async function settle(socks: readonly Socket[], ms: number): Promise<number> {
  await Promise.race([Promise.all(socks.map(closedByPeer)), sleep(ms)]);
  const left = socks.filter((s) => !s.destroyed).length;
  for (const s of socks) s.destroy();
  return left;
}

/** A TLS connection to the server's port (CA-checked, half-open allowed), past its HELLO: a peer that has not yet said what it is. */
export async function secureTo(t: Cleanup, port: number, caPem: string): Promise<{ socket: TLSSocket; channel: FrameChannel }> {
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ host: LOOPBACK, port, servername: 'localhost', ca: caPem, allowHalfOpen: true } as never, () => resolve(s));
    s.once('error', reject);
    t.teardown(() => s.destroy());
  });
  socket.on('error', () => undefined);
  const channel = new FrameChannel(socket);
  await channel.next(5_000); // HELLO
  return { socket, channel };
}
