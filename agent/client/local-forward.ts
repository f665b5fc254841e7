/**
 * `--listen`: a local TCP port that carries each accepted connection through its own tunnel
 * to the device's service (like `ssh -L`). The first tunnel may be opened ahead of time, so
 * that a wrong password or an offline device is reported at start, not at first use. The port
 * opens at once even so: connections made before that first tunnel is up wait for it (the first
 * of them gets it), and if it fails they are closed and the error is logged.
 * P10: each local connection costs a request to the server until its tunnel is up, so at most
 * `maxPending` wait at once (more are dropped at once) and each waits at most `openTimeoutMs`;
 * one that closes meanwhile cancels its request. A half-close while waiting is kept (and passed on
 * once the tunnel is up): `printf 'GET / ...' | nc -N` is a legitimate client.
 * While a session is up, a local connection gets its stream at once (client.openLive): it waits for
 * nothing, so it takes no pending slot, deadline or cancel signal (issue 15: per connection, the
 * abort signal alone cost about as much as the HTTP/2 stream's own set-up in the web page's profile).
 */
import { closeServer, listenOn } from '../common/listen.js';
import { createServer, Socket, type Server } from 'node:net';
import type { Logger } from 'pino';
import { Counters } from '../common/counters.js';
import { ErrorCodes } from '../common/errors.js';
import { rejectUnknownKeys } from '../common/options.js';
import { join, JOIN_QUEUE_BYTES, TUNNEL_JOIN_QUEUE_BYTES } from '../common/pipe.js';
import { createPreAuthGate } from '../common/preauth-gate.js';
import { LOCAL_FORWARD_MAX_PENDING_CONNECTIONS } from '../protocol/constants.js';
import type { HostPort } from '../common/endpoint-parse.js';
import type { Client, Tunnel } from './client.js';

export interface LocalForwardOptions {
  readonly client: Client;
  readonly listen: HostPort;
  readonly logger: Logger;
  /** A tunnel already open, or being opened, used for the first local connection. */
  readonly first?: Tunnel | Promise<Tunnel>;
  /** Local connections waiting for their tunnel at once; more are destroyed at once ('overCap'). */
  readonly maxPending?: number;
  /** From accept until the tunnel must be up. */
  readonly openTimeoutMs?: number;
}

/** Longer than a client's own worst case (the server's answer, then the peer handshake). */
export const LOCAL_FORWARD_OPEN_TIMEOUT_MS = 60_000;
const LOCAL_CLOSED = new Error('the local connection closed');
const STOPPED = new Error('the local forward is stopping');
export const LOCAL_FORWARD_COUNTERS = ['served', 'openFailed', 'overCap'] as const;

export interface LocalForward {
  start(): Promise<{ address: string; port: number }>;
  /** Where it listens (after start). */
  address(): { address: string; port: number };
  stop(): Promise<void>;
  readonly counters: Counters<(typeof LOCAL_FORWARD_COUNTERS)[number]>;
}

export function createLocalForward(input: LocalForwardOptions): LocalForward {
  rejectUnknownKeys('local forward options', input, ['client', 'listen', 'logger', 'first', 'maxPending', 'openTimeoutMs']);
  const o = Object.freeze({
    client: input.client,
    listen: input.listen,
    logger: input.logger,
    maxPending: input.maxPending ?? LOCAL_FORWARD_MAX_PENDING_CONNECTIONS,
    openTimeoutMs: input.openTimeoutMs ?? LOCAL_FORWARD_OPEN_TIMEOUT_MS,
  });
  let spare: Tunnel | undefined;
  let firstError: Error | null = null;
  let firstDone = false;
  // Local connections wait for this before anything else: the first tunnel up, or failed.
  const firstSettled: Promise<void> = Promise.resolve(input.first).then(
    (t) => void ((spare = t), (firstDone = true)),
    (err: Error) => void ((firstError = err), (firstDone = true)),
  );
  const counters = new Counters(LOCAL_FORWARD_COUNTERS);
  const gate = createPreAuthGate({ maxPending: o.maxPending, deadlineMs: o.openTimeoutMs });
  const conns = new Set<Socket>();
  // Connections still waiting for their tunnel, each with how to cancel its wait (stop() does).
  const waiting = new Set<() => void>();
  let server: Server | null = null;

  async function serve(local: Socket): Promise<void> {
    local.on('error', () => undefined); // a reset while waiting; join() handles the rest
    const sessionUp = firstDone && !firstError && !spare;
    // A mux session up now: the socket glued to its stream at once, no Duplex nor pipe in between.
    if (sessionUp && o.client.attachLive(local, onStreamReset)) {
      counters.inc('served');
      conns.add(local);
      local.once('close', () => conns.delete(local));
      return;
    }
    // An HTTP/2 session up now: the stream at once, nothing to wait for.
    const live = sessionUp ? o.client.openLive() : null;
    if (live) {
      conns.add(local);
      local.once('close', () => conns.delete(local));
      return forward(local, live);
    }
    local.pause();
    // Cancelled when the deadline passes or the local end closes first.
    const cancel = new AbortController();
    const admission = gate.admit(local, () => cancel.abort());
    if (!admission) {
      counters.inc('overCap');
      return;
    }
    conns.add(local);
    let opening = true;
    local.once('close', () => {
      conns.delete(local);
      // Only a wait is cancelled: aborting a signal nobody listens to any more still dispatches an event.
      if (opening) cancel.abort(LOCAL_CLOSED); // a reason made once: the default (a DOMException) costs a stack trace per connection
    });
    let tunnel: Tunnel;
    // Stopping cancels too (a set, not a listener on a shared signal nor AbortSignal.any: both cost per connection).
    const onStop = (): void => cancel.abort(STOPPED);
    waiting.add(onStop);
    try {
      await firstSettled;
      if (firstError) throw firstError;
      if (cancel.signal.aborted) throw new Error('the local connection closed while the first tunnel was opened');
      if (spare && !spare.stream.destroyed) {
        tunnel = spare;
        spare = undefined;
        // Early: the connection's first bytes go with its stream's CONNECT (a refusal ends it below).
      } else tunnel = await o.client.open(cancel.signal, undefined, { early: true });
    } catch (err) {
      counters.inc('openFailed');
      if (!cancel.signal.aborted)
        o.logger.error(
          { err: (err as Error).message, code: (err as { code?: string }).code },
          'could not open a tunnel for a local connection',
        );
      local.destroy();
      return;
    } finally {
      opening = false;
      waiting.delete(onStop);
      admission.done();
    }
    return forward(local, tunnel);
  }

  /** An early stream the device refuses (or does not answer) ends with the reason: say it. */
  function onStreamReset(err: Error & { code?: string }): void {
    // DEVICE_BUSY also when no stream of the session came free in time (mux-held.ts).
    if (err.name === 'StreamRefusedError' || err.code === ErrorCodes.PEER_TIMEOUT || err.code === ErrorCodes.DEVICE_BUSY) {
      counters.inc('openFailed');
      o.logger.error({ err: err.message, code: err.code }, 'could not open a tunnel for a local connection');
    }
  }

  /** Join the local connection and its tunnel until both ends are done. */
  async function forward(local: Socket, tunnel: Tunnel): Promise<void> {
    if (local.destroyed) {
      tunnel.stream.destroy();
      return;
    }
    counters.inc('served');
    tunnel.stream.once('error', onStreamReset);
    local.resume();
    // A whole tunnel (a TLS socket) gets the larger queue bound; a stream of a session the default.
    await join(local, tunnel.stream, tunnel.stream instanceof Socket ? TUNNEL_JOIN_QUEUE_BYTES : JOIN_QUEUE_BYTES);
  }

  function address(): { address: string; port: number } {
    const a = server?.address();
    return typeof a === 'object' && a ? { address: a.address, port: a.port } : { address: o.listen.host, port: o.listen.port };
  }

  return {
    counters,
    async start() {
      const s = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => void serve(sock));
      await listenOn(s, o.listen.port, o.listen.host);
      server = s;
      return address();
    },
    address,
    async stop() {
      for (const cancelWait of [...waiting]) cancelWait();
      spare?.stream.destroy();
      const s = server;
      server = null;
      if (s) await closeServer(s, conns);
    },
  };
}
