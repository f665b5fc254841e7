/**
 * The fast UDP sender: mutants of the seeds, written into pre-allocated scratch buffers and sent
 * in batches from a few sockets, with one await per batch (the last send's callback: UDP sends
 * complete in order, so the whole batch has left and its buffers may be reused). Counts the bytes
 * sent and the bytes that come back on its own sockets (the server's answers).
 */
import { createSocket, type Socket } from 'node:dgram';
import { bindUdp, closeUdp } from '../../agent/common/listen.js';
import type { Mutator } from './mutator.js';
import type { Rng } from './rng.js';
import type { Seed } from './seeds.js';

export const UDP_BATCH_PACKETS = 256;
/** Beyond the protocol's 256-byte maximum, so oversize packets are sent too. */
export const UDP_FUZZ_MAX_BYTES = 320;

export interface UdpFloodOptions {
  readonly name: string;
  /** Always 127.0.0.1: the fuzzer sends nowhere else. */
  readonly port: number;
  readonly seeds: readonly Seed[];
  readonly mutator: Mutator;
  readonly rng: Rng;
  readonly sockets?: number;
  /** Packets per second at most (0: as fast as the sockets take them). */
  readonly ratePerS?: number;
}

export interface FloodStats {
  readonly name: string;
  readonly packets: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly datagramsReceived: number;
  readonly sendErrors: number;
  readonly elapsedMs: number;
}

export interface UdpFlood {
  start(): Promise<void>;
  /** Send `count` packets, finishing by `deadline` (performance.now() ms) whatever is left. */
  run(count: number, deadlineMs: number): Promise<void>;
  stats(): FloodStats;
  /** Keep listening a little for late answers, then close. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

export function createUdpFlood(input: UdpFloodOptions): UdpFlood {
  const o = Object.freeze({ ...input, sockets: input.sockets ?? 4, ratePerS: input.ratePerS ?? 0 });
  if (o.seeds.length === 0) throw new RangeError(`${o.name}: no seeds`);
  if (!Number.isInteger(o.port) || o.port <= 0 || o.port > 65535) throw new RangeError(`${o.name}: port ${o.port}`);
  const scratch = Array.from({ length: UDP_BATCH_PACKETS }, () => Buffer.alloc(UDP_FUZZ_MAX_BYTES));
  const sockets: Socket[] = [];
  let packets = 0;
  let bytesSent = 0;
  let bytesReceived = 0;
  let datagramsReceived = 0;
  let sendErrors = 0;
  let elapsedMs = 0;
  const countError = (err: Error | null): void => {
    if (err) sendErrors++;
  };

  return {
    async start() {
      for (let i = 0; i < o.sockets; i++) {
        const s = createSocket('udp4');
        s.on('message', (m) => {
          datagramsReceived++;
          bytesReceived += m.length;
        });
        s.on('error', () => void sendErrors++);
        await bindUdp(s, 0, HOST);
        // Connected: no address lookup per datagram, and only the target's answers are counted.
        await new Promise<void>((resolve) => s.connect(o.port, HOST, resolve));
        sockets.push(s);
      }
    },
    async run(count, deadlineMs) {
      const t0 = performance.now();
      while (packets < count && performance.now() < deadlineMs) {
        const n = Math.min(UDP_BATCH_PACKETS, count - packets);
        await new Promise<void>((resolve) => {
          // A callback on each socket's last send of the batch: once all have fired, every buffer is free.
          let pending = Math.min(n, sockets.length);
          const done = (err: Error | null): void => {
            if (err) sendErrors++;
            if (--pending === 0) resolve();
          };
          for (let i = 0; i < n; i++) {
            const buf = scratch[i]!;
            const len = o.mutator.mutate(o.seeds[o.rng.below(o.seeds.length)]!, buf);
            bytesSent += len;
            const lastOnSocket = i >= n - sockets.length;
            sockets[i % sockets.length]!.send(buf.subarray(0, len), lastOnSocket ? done : countError);
          }
        });
        packets += n;
        if (o.ratePerS > 0) {
          const aheadMs = (packets / o.ratePerS) * 1000 - (performance.now() - t0);
          if (aheadMs > 1) await new Promise((r) => setTimeout(r, aheadMs));
        } else await new Promise((r) => setImmediate(r)); // let answers be read between batches
      }
      elapsedMs += performance.now() - t0;
    },
    stats: () => Object.freeze({ name: o.name, packets, bytesSent, bytesReceived, datagramsReceived, sendErrors, elapsedMs }),
    async stop() {
      await Promise.all(sockets.splice(0).map((s) => closeUdp(s)));
    },
  };
}
