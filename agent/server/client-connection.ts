/**
 * One client's TLS connection to the server: its connection requests one after another (like HTTP
 * keep-alive), so a client's second request costs no TLS handshake at either end. Each request
 * goes through client-request.ts exactly as the first did (admission, rate limits, deny list,
 * per-source caps, the connection's source as the observed address). After an answer the server
 * sends a fresh HELLO: "send your next request here" (its time for the request's timestamp); it
 * closes a connection that stays idle past `idleMs` or that served `maxRequests`, and it sends no
 * HELLO then, so the client knows not to keep it.
 */
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../common/clock.js';
import type { Counters } from '../common/counters.js';
import { ErrorCodes, isPeerlinkError } from '../common/errors.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { RENDEZVOUS_ALPN } from '../protocol/constants.js';
import type { BrokerCounter } from './broker-counters.js';
import type { ClientRequests } from './client-request.js';

/** A client connection with no request for this long is closed (the client keeps it SERVER_KEEP_IDLE_MS, less). */
export const CLIENT_CONNECTION_IDLE_MS = 60_000;
/** Requests on one connection; then it is closed after its answer (the client opens another). */
export const CLIENT_CONNECTION_MAX_REQUESTS = 1000;

type ConnectRequest = Extract<Frame, { type: typeof FrameType.CONNECT_REQUEST }>;

export interface ClientConnectionContext {
  readonly requests: ClientRequests;
  readonly counters: Counters<BrokerCounter>;
  readonly clock: Clock;
  /** 0: one request per connection (as before keep-alive). */
  readonly idleMs: number;
  readonly maxRequests: number;
  /** Counts a request as in flight while it is served (not while its connection waits idle). */
  readonly track: <T>(work: Promise<T>) => Promise<T>;
  readonly draining: () => boolean;
  /** RELAY_RELEASE on this connection (relay.ts release(): only an offer made over it). */
  readonly releaseRelay: (requestId: Buffer, channel: FrameChannel) => void;
}

export interface ClientConnections {
  /** Serve `first` and the requests that follow it on the connection; resolves when it is closed. */
  serve(channel: FrameChannel, socket: TLSSocket, first: ConnectRequest): Promise<void>;
  /** Close the connections waiting for a next request (the server is stopping): their clients go elsewhere. */
  closeIdle(): void;
}

export function createClientConnections(ctx: ClientConnectionContext): ClientConnections {
  /** Connections between requests: bounded by the open connections, each removed when it leaves the wait. */
  const idle = new Set<FrameChannel>();

  async function serve(channel: FrameChannel, socket: TLSSocket, first: ConnectRequest): Promise<void> {
    // A client that knows relay plans frees an offer it did not need (another path won) whenever its
    // race ends, also while this connection serves its next request: taken as it arrives.
    // At most one release per request served here (each got at most one offer): a client that sends
    // more is not one, and its connection is closed (releases skip the frame queue and its bound).
    let served = 1;
    let releases = 0;
    if (socket.alpnProtocol === RENDEZVOUS_ALPN)
      channel.divert(FrameType.RELAY_RELEASE, (f) => {
        if (++releases > served) return void socket.destroy();
        if (f.type === FrameType.RELAY_RELEASE) ctx.releaseRelay(f.requestId, channel);
      });
    let req: ConnectRequest = first;
    for (; ; served++) {
      // The answer's frames (relay offer, candidates, result) and the next HELLO leave in one
      // write: one TLS record and one segment instead of four (each cost more CPU than the
      // frame's own work). Nothing else is written to the client while its request is served.
      socket.cork();
      const keeps = !(ctx.draining() || ctx.idleMs === 0 || served >= ctx.maxRequests);
      try {
        await ctx.track(ctx.requests.serve(channel, socket, req, keeps));
      } catch (err) {
        socket.uncork();
        throw err;
      }
      if (socket.destroyed || ctx.draining() || ctx.idleMs === 0 || served >= ctx.maxRequests) {
        socket.uncork();
        break;
      }
      channel.send({ type: FrameType.HELLO, serverTimeMs: ctx.clock.now() });
      socket.uncork();
      let next: Frame;
      idle.add(channel);
      try {
        next = await channel.next(ctx.idleMs);
      } catch (err) {
        // Idle past the bound; or the client closed it (its own idle time is shorter), or we are stopping.
        if (isPeerlinkError(err, ErrorCodes.PEER_TIMEOUT)) ctx.counters.inc('keptClientIdleClosed');
        break;
      } finally {
        idle.delete(channel);
      }
      if (next.type !== FrameType.CONNECT_REQUEST) {
        ctx.counters.inc('badFirstFrame');
        socket.destroy();
        return;
      }
      ctx.counters.inc('keptClientRequests');
      req = next;
    }
    channel.close();
  }

  return {
    serve,
    closeIdle() {
      for (const channel of idle) channel.close();
    },
  };
}
