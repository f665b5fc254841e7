/** Raw TCP connections a hostile peer opens against a listener, and waiting for the listener to close them (P10). */
import { connect, type Socket } from 'node:net';
import { LOOPBACK, sleep } from './helpers.js';

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
