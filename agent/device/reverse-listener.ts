/**
 * The device's own listening port, for the reverse strategy: when the device's router forwards a
 * port to it (UPnP / NAT-PMP) or the device has a public address, the client dials it. A client
 * names its request with a token only the two ends can compute (keys.reverseToken); the device
 * then runs the same TLS-PSK channel over that connection as over its own dial. Connections that
 * do not name an awaited request within the token timeout are dropped and counted (P10): also one
 * that half-closes first (the server allows half-open connections for the tunnels that follow),
 * and any beyond `maxPending` connections still before their token.
 */
import { closeServer, listenOn } from '../common/listen.js';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { Counters } from '../common/counters.js';
import { abortError } from '../common/errors.js';
import { rejectUnknownKeys } from '../common/options.js';
import { createPreAuthGate } from '../common/preauth-gate.js';
import { REVERSE_MAX_PENDING_CONNECTIONS, REVERSE_TOKEN_TIMEOUT_MS } from '../protocol/constants.js';
import { REVERSE_TOKEN_BYTES } from '../protocol/keys.js';

export const REVERSE_COUNTERS = ['accepted', 'unknownToken', 'noToken', 'overCap'] as const;

export interface ReverseListenerOptions {
  readonly host?: string;
  /** 0 = any free port. */
  readonly port: number;
  readonly logger: Logger;
  readonly tokenTimeoutMs?: number;
  /** Connections still before their token at once; more are destroyed at once ('overCap'). */
  readonly maxPending?: number;
}

export interface ReverseListener {
  start(): Promise<void>;
  stop(): Promise<void>;
  port(): number;
  /** Wait for the client's connection naming this token (until the signal aborts). */
  await(token: Buffer, signal: AbortSignal): Promise<Socket>;
  readonly counters: Counters<(typeof REVERSE_COUNTERS)[number]>;
}

export function createReverseListener(input: ReverseListenerOptions): ReverseListener {
  rejectUnknownKeys('reverse listener options', input, ['host', 'port', 'logger', 'tokenTimeoutMs', 'maxPending']);
  const o = Object.freeze({
    // Both families (listen.ts DUAL_STACK_HOST): a client may reach the device over IPv6.
    host: input.host ?? '::',
    port: input.port,
    logger: input.logger,
    tokenTimeoutMs: input.tokenTimeoutMs ?? REVERSE_TOKEN_TIMEOUT_MS,
    maxPending: input.maxPending ?? REVERSE_MAX_PENDING_CONNECTIONS,
  });
  const counters = new Counters(REVERSE_COUNTERS);
  const gate = createPreAuthGate({ maxPending: o.maxPending, deadlineMs: o.tokenTimeoutMs });
  const waiting = new Map<string, (s: Socket) => void>();
  const open = new Set<Socket>();
  let server: Server | null = null;

  function onConnection(sock: Socket): void {
    sock.on('error', () => undefined);
    const admission = gate.admit(sock, () => counters.inc('noToken'));
    if (!admission) {
      counters.inc('overCap');
      return;
    }
    open.add(sock);
    sock.once('close', () => open.delete(sock));
    let got = Buffer.alloc(0);
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (got.length < REVERSE_TOKEN_BYTES && (chunk = sock.read(REVERSE_TOKEN_BYTES - got.length) as Buffer | null) !== null)
        got = Buffer.concat([got, chunk]);
      if (got.length < REVERSE_TOKEN_BYTES) return;
      admission.done();
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      const key = got.toString('hex');
      const hand = waiting.get(key);
      if (!hand) {
        counters.inc('unknownToken');
        sock.destroy();
        return;
      }
      waiting.delete(key);
      open.delete(sock);
      counters.inc('accepted');
      hand(sock);
    };
    // The peer stopped writing before its token: it never will send one, so nothing to wait for.
    const onEnd = (): void => {
      admission.done();
      counters.inc('noToken');
      sock.destroy();
    };
    sock.on('readable', onReadable);
    sock.once('end', onEnd);
  }

  return {
    counters,
    async start() {
      const s = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, onConnection);
      await listenOn(s, o.port, o.host);
      s.on('error', (err) => o.logger.warn({ err: err.message }, 'reverse listener error'));
      server = s;
    },
    async stop() {
      const s = server;
      server = null;
      if (!s) return;
      await closeServer(s, open);
    },
    port() {
      const a = server?.address();
      if (!a || typeof a === 'string') throw new Error('reverse listener not started');
      return a.port;
    },
    await(token, signal) {
      return new Promise<Socket>((resolve, reject) => {
        if (signal.aborted) return reject(abortError(signal));
        const key = token.toString('hex');
        const onAbort = (): void => {
          if (waiting.get(key) === hand) waiting.delete(key);
          reject(abortError(signal));
        };
        const hand = (s: Socket): void => {
          signal.removeEventListener('abort', onAbort);
          if (signal.aborted) {
            s.destroy();
            return;
          }
          resolve(s);
        };
        waiting.set(key, hand);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
}
