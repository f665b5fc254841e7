/**
 * Where the device's direct connection (S208) arrives: a TLS 1.3 PSK listener. Each expected
 * connection is registered under its client nonce; the PSK identity the device sends names that
 * nonce and the device's own, from which the session key is derived (P4). Anything else (port
 * scans, a stranger, a wrong key) fails the handshake and is dropped. P10: the handshake must
 * complete within `handshakeTimeoutMs` of the accept, whatever the peer does (half-close, silence,
 * a trickle), and at most `maxPending` connections may be before it at once; more are dropped.
 * A plain TCP server wrapping each admitted socket itself (rather than tls.createServer), so that
 * the gate holds the raw socket from its accept.
 */
import { keepTunnelAlive } from '../common/tunnel-liveness.js';
import { closeServer, listenOn } from '../common/listen.js';
import { TLSSocket } from 'node:tls';
import { createServer, type Server, type Socket } from 'node:net';
import { Counters } from '../common/counters.js';
import { rejectUnknownKeys } from '../common/options.js';
import { createPreAuthGate } from '../common/preauth-gate.js';
import { PEER_MAX_PENDING_CONNECTIONS, TLS_HANDSHAKE_TIMEOUT_MS, TUNNEL_PSK_IDENTITY_PREFIX } from '../protocol/constants.js';
import { tunnelServerContext } from '../protocol/tunnel-tls.js';
import { deriveTunnelPsk, NONCE_BYTES } from '../protocol/keys.js';

export interface Expected {
  readonly clientNonce: Buffer;
  readonly accessKey: Buffer;
  readonly equipmentId: string;
  readonly service: string;
  readonly resolve: (socket: TLSSocket) => void;
}

export interface PeerListener {
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { address: string; port: number };
  expect(e: Expected): () => void;
  readonly counters: Counters<(typeof PEER_COUNTERS)[number]>;
}

export const PEER_COUNTERS = ['accepted', 'unexpected', 'handshakeFailed', 'handshakeTimeout', 'overCap'] as const;

export interface PeerListenerOptions {
  readonly host: string;
  readonly port: number;
  /** From accept to a completed handshake. */
  readonly handshakeTimeoutMs?: number;
  /** Connections before their handshake at once; more are destroyed at once ('overCap'). */
  readonly maxPending?: number;
}

export function parsePskIdentity(identity: string): { clientNonce: Buffer; deviceNonce: Buffer } | null {
  if (!identity.startsWith(TUNNEL_PSK_IDENTITY_PREFIX)) return null;
  const [c, d, ...rest] = identity.slice(TUNNEL_PSK_IDENTITY_PREFIX.length).split(':');
  const hex = /^[0-9a-f]+$/;
  if (rest.length || !c || !d || !hex.test(c) || !hex.test(d) || c.length !== NONCE_BYTES * 2 || d.length !== NONCE_BYTES * 2) return null;
  return { clientNonce: Buffer.from(c, 'hex'), deviceNonce: Buffer.from(d, 'hex') };
}

/** The session PSK for a device's identity, if it names this expected request; else null. */
export function pskFor(e: Pick<Expected, 'clientNonce' | 'accessKey' | 'equipmentId' | 'service'>, identity: string): Buffer | null {
  const ids = parsePskIdentity(identity);
  if (!ids || !ids.clientNonce.equals(e.clientNonce)) return null;
  return deriveTunnelPsk(e.accessKey, e.clientNonce, ids.deviceNonce, e.equipmentId, e.service);
}

export function createPeerListener(input: PeerListenerOptions): PeerListener {
  rejectUnknownKeys('peer listener options', input, ['host', 'port', 'handshakeTimeoutMs', 'maxPending']);
  const o = Object.freeze({
    host: input.host,
    port: input.port,
    handshakeTimeoutMs: input.handshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
    maxPending: input.maxPending ?? PEER_MAX_PENDING_CONNECTIONS,
  });
  const expected = new Map<string, Expected>();
  const counters = new Counters(PEER_COUNTERS);
  const gate = createPreAuthGate({ maxPending: o.maxPending, deadlineMs: o.handshakeTimeoutMs });
  const open = new Set<Socket>();
  let server: Server | null = null;

  function onConnection(raw: Socket): void {
    raw.on('error', () => undefined);
    const admission = gate.admit(raw, () => counters.inc('handshakeTimeout'));
    if (!admission) {
      counters.inc('overCap');
      return;
    }
    open.add(raw);
    raw.once('close', () => open.delete(raw));
    let matched: Expected | undefined;
    const sock = new TLSSocket(raw, {
      isServer: true,
      // TLS 1.3 with TUNNEL_CIPHER only, no resumption, one context per process.
      secureContext: tunnelServerContext(),
      pskCallback: (_socket: TLSSocket, identity: string) => {
        const ids = parsePskIdentity(identity);
        const e = ids ? expected.get(ids.clientNonce.toString('hex')) : undefined;
        if (!ids || !e) {
          counters.inc('unexpected');
          return null;
        }
        matched = e;
        return deriveTunnelPsk(e.accessKey, e.clientNonce, ids.deviceNonce, e.equipmentId, e.service);
      },
    } as ConstructorParameters<typeof TLSSocket>[1]);
    // Half-close must cross the tunnel once it is up: a client that shuts down writing still reads
    // the answer. Before the handshake, an end means the peer gave up: drop it.
    sock.allowHalfOpen = true;
    const onEarlyEnd = (): void => {
      counters.inc('handshakeFailed');
      sock.destroy();
      raw.destroy();
    };
    sock.once('end', onEarlyEnd);
    sock.once('error', () => {
      counters.inc('handshakeFailed');
      sock.destroy();
      raw.destroy();
    });
    raw.once('close', () => sock.destroy());
    sock.once('secure', () => {
      admission.done();
      sock.off('end', onEarlyEnd);
      sock.removeAllListeners('error');
      sock.on('error', () => undefined); // reported by whoever reads the stream next
      const e = matched;
      // Single use: the first device connection for a nonce wins; later ones are refused.
      if (!e || expected.get(e.clientNonce.toString('hex')) !== e) {
        counters.inc('unexpected');
        sock.destroy();
        return;
      }
      expected.delete(e.clientNonce.toString('hex'));
      counters.inc('accepted');
      keepTunnelAlive(raw);
      e.resolve(sock);
    });
  }

  return {
    counters,
    expect(e) {
      const key = e.clientNonce.toString('hex');
      expected.set(key, e);
      return () => {
        if (expected.get(key) === e) expected.delete(key);
      };
    },
    async start() {
      const s = createServer({ allowHalfOpen: true, noDelay: true }, onConnection);
      await listenOn(s, o.port, o.host);
      server = s;
    },
    async stop() {
      const s = server;
      server = null;
      if (!s) return;
      await closeServer(s, open);
    },
    address() {
      const a = server?.address();
      if (!a || typeof a === 'string') throw new Error('peer listener not started');
      return { address: a.address, port: a.port };
    },
  };
}
