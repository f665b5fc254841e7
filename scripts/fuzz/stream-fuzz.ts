/**
 * Mutants over TCP: a few connections at a time to one port, each carrying 1..MAX_WRITES mutated
 * chunks, then left in one of the ways a hostile peer leaves (half-close, reset, or silence until
 * the target closes). The raw TLS port and the agent's reverse port get these; `secure` runs a
 * real TLS handshake with the CA first, so the chunks reach the server's frame parser.
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Mutator } from './mutator.js';
import type { Rng } from './rng.js';
import type { Seed } from './seeds.js';

export const STREAM_MAX_WRITES = 4;
/**
 * How long the fuzzer waits for the target to close after it half-closed (a target that keeps such
 * sockets leaks them: the fuzzer then drops its side and counts it), and, for a silent connection,
 * for the target's own timeout (the reverse port's token timeout is 5 s).
 */
export const HALF_CLOSE_WAIT_MS = 1_500;
export const SILENT_WAIT_MS = 6_000;
const HOST = '127.0.0.1';

/** How a connection ends: the fuzzer half-closes, resets, or stays silent and lets the target close. */
export const ENDINGS = ['halfClose', 'reset', 'silent'] as const;
export type Ending = (typeof ENDINGS)[number];
const ENDING_WEIGHTS: Readonly<Record<Ending, number>> = { halfClose: 48, reset: 48, silent: 4 };

export interface StreamFuzzOptions {
  readonly name: string;
  readonly port: number;
  readonly seeds: readonly Seed[];
  readonly mutator: Mutator;
  readonly rng: Rng;
  readonly maxBytes: number;
  readonly concurrency?: number;
  /** TLS first, verified against this CA for server name "localhost". */
  readonly secure?: { readonly caPem: string };
}

export interface StreamStats {
  readonly name: string;
  /** Mutated chunks written (the "packets" of a stream target). */
  readonly packets: number;
  readonly connections: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Connections the fuzzer half-closed or left silent that the target had not closed in time (the fuzzer dropped its side). */
  readonly notClosedByTarget: Readonly<Record<Ending, number>>;
  /** TLS handshakes that failed (secure targets: each one is a connection the server refused). */
  readonly handshakeFailures: number;
  readonly endings: Readonly<Record<Ending, number>>;
}

export interface StreamFuzz {
  /** Write at least `count` chunks (whole connections), finishing by `deadlineMs` (performance.now()). */
  run(count: number, deadlineMs: number): Promise<void>;
  stats(): StreamStats;
}

export function createStreamFuzz(input: StreamFuzzOptions): StreamFuzz {
  const o = Object.freeze({ ...input, concurrency: input.concurrency ?? 16 });
  if (o.seeds.length === 0) throw new RangeError(`${o.name}: no seeds`);
  const scratch = Buffer.alloc(o.maxBytes);
  const endings: Record<Ending, number> = { halfClose: 0, reset: 0, silent: 0 };
  let packets = 0;
  let connections = 0;
  let bytesSent = 0;
  let bytesReceived = 0;
  const notClosedByTarget: Record<Ending, number> = { halfClose: 0, reset: 0, silent: 0 };
  let handshakeFailures = 0;

  function pickEnding(): Ending {
    let r = o.rng.below(100);
    for (const e of ENDINGS) if ((r -= ENDING_WEIGHTS[e]) < 0) return e;
    return 'reset';
  }

  function open(): Promise<Socket | null> {
    return new Promise((resolve) => {
      const s = o.secure
        ? tlsConnect({ host: HOST, port: o.port, ca: o.secure.caPem, servername: 'localhost' })
        : tcpConnect({ host: HOST, port: o.port });
      const onError = (): void => {
        if (o.secure) handshakeFailures++;
        s.destroy();
        resolve(null);
      };
      s.once('error', onError);
      s.once(o.secure ? 'secureConnect' : 'connect', () => {
        s.off('error', onError);
        s.on('error', () => undefined); // the target may reset us at any time: that is its right
        resolve(s);
      });
    });
  }

  async function oneConnection(): Promise<void> {
    const s = await open();
    connections++;
    if (!s) return;
    s.on('data', (d: Buffer) => void (bytesReceived += d.length));
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    const writes = 1 + o.rng.below(STREAM_MAX_WRITES);
    for (let i = 0; i < writes && !s.destroyed; i++) {
      const len = o.mutator.mutate(o.seeds[o.rng.below(o.seeds.length)]!, scratch);
      // A copy: the socket may still hold the chunk when the scratch buffer is reused.
      s.write(Buffer.from(scratch.subarray(0, len)));
      packets++;
      bytesSent += len;
    }
    const ending = pickEnding();
    endings[ending]++;
    if (ending === 'halfClose') s.end();
    // A TLS socket cannot be reset from Node (resetAndDestroy is for plain TCP): destroy it at once instead.
    else if (ending === 'reset') o.secure ? s.destroy() : s.resetAndDestroy();
    const budgetMs = ending === 'silent' ? SILENT_WAIT_MS : HALF_CLOSE_WAIT_MS;
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([closed.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), budgetMs)))]);
    clearTimeout(timer);
    if (late) {
      notClosedByTarget[ending]++;
      s.destroy();
    }
  }

  return {
    async run(count, deadlineMs) {
      const worker = async (): Promise<void> => {
        while (packets < count && performance.now() < deadlineMs) await oneConnection();
      };
      await Promise.all(Array.from({ length: o.concurrency }, worker));
    },
    stats: () =>
      Object.freeze({
        name: o.name,
        packets,
        connections,
        bytesSent,
        bytesReceived,
        notClosedByTarget: Object.freeze({ ...notClosedByTarget }),
        handshakeFailures,
        endings: Object.freeze({ ...endings }),
      }),
  };
}
