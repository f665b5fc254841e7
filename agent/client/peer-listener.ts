/**
 * Where the device's direct connection (S208) arrives: a TLS 1.3 PSK listener. Each expected
 * connection is registered under its client nonce; the PSK identity the device sends names that
 * nonce and the device's own, from which the session key is derived (P4). Anything else (port
 * scans, a stranger, a wrong key) fails the handshake and is dropped.
 */
import { closeServer, listenOn } from '../common/listen.js';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { Counters } from '../common/counters.js';
import { TUNNEL_CIPHER, TUNNEL_KEEPALIVE_MS, TUNNEL_PSK_IDENTITY_PREFIX } from '../protocol/constants.js';
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
  readonly counters: Counters<'accepted' | 'unexpected' | 'handshakeFailed'>;
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

export function createPeerListener(opts: { readonly host: string; readonly port: number }): PeerListener {
  const expected = new Map<string, Expected>();
  const matched = new WeakMap<Socket, Expected>();
  const counters = new Counters(['accepted', 'unexpected', 'handshakeFailed'] as const);
  const open = new Set<Socket>();
  let server: Server | null = null;

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
      const s = createServer({
        // Half-close must cross the tunnel: a client that shuts down writing still reads the answer.
        allowHalfOpen: true,
        ciphers: TUNNEL_CIPHER,
        minVersion: 'TLSv1.3',
        maxVersion: 'TLSv1.3',
        pskCallback: (socket, identity) => {
          const ids = parsePskIdentity(identity);
          const e = ids ? expected.get(ids.clientNonce.toString('hex')) : undefined;
          if (!ids || !e) {
            counters.inc('unexpected');
            return null;
          }
          matched.set(socket, e);
          return deriveTunnelPsk(e.accessKey, e.clientNonce, ids.deviceNonce, e.equipmentId, e.service);
        },
      });
      s.on('connection', (sock: Socket) => {
        open.add(sock);
        sock.once('close', () => open.delete(sock));
      });
      s.on('secureConnection', (sock: TLSSocket) => {
        const e = matched.get(sock);
        // Single use: the first device connection for a nonce wins; later ones are refused.
        if (!e || expected.get(e.clientNonce.toString('hex')) !== e) {
          counters.inc('unexpected');
          sock.destroy();
          return;
        }
        expected.delete(e.clientNonce.toString('hex'));
        counters.inc('accepted');
        sock.setKeepAlive(true, TUNNEL_KEEPALIVE_MS);
        e.resolve(sock);
      });
      s.on('tlsClientError', () => counters.inc('handshakeFailed'));
      await listenOn(s, opts.port, opts.host);
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
