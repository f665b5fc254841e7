/**
 * Throughput through an echo (plain, TLS, or a peerlink tunnel), shared by `npm run bench` and
 * `npm run bench -- server`: one round trip of `data`, best of N in Mbit/s counting both directions.
 */
import { createHash } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { closeServer, listenOn } from '../../agent/common/listen.js';
import type { Program } from '../lib/program.js';

/** The service the benches measure through: a TCP echo on 127.0.0.1, listening. */
export async function startEchoServer(): Promise<{ readonly port: number; close(): Promise<void> }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await listenOn(server, 0, '127.0.0.1');
  return { port: (server.address() as { port: number }).port, close: () => closeServer(server) };
}

/** A TCP connection to 127.0.0.1:port that sends `data` and half-closes. */
export const viaTcp = (port: number, data: Buffer) => (): Socket => {
  const s = connect(port, '127.0.0.1', () => s.end(data));
  return s;
};

/** Milliseconds until the echo of `data` has come back whole on the connection `open` makes. */
export function roundTrip(open: () => Socket, data: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const hash = createHash('sha256');
    let got = 0;
    const s = open();
    s.on('data', (d: Buffer) => {
      hash.update(d);
      got += d.length;
    });
    s.on('close', () => (got === data.length ? resolve(performance.now() - t0) : reject(new Error(`got ${got} of ${data.length} bytes`))));
    s.on('error', reject);
  });
}

export async function bestMbps(open: () => Socket, data: Buffer, rounds: number): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < rounds; i++) best = Math.min(best, await roundTrip(open, data));
  return (2 * data.length * 8) / (best / 1000) / 1e6;
}

/** Until a `peerlink connect --listen` client says it is serving. */
export async function waitServing(p: Program): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (p.stderr.some((l) => /serving/.test(l))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`client did not start: ${p.stderr.join(' | ')}`);
}
