/**
 * The rendezvous server's TCP port (connection-broker.ts): one listener, two kinds of connection.
 * Each new connection's first byte decides: a frame's version byte opens a plain relay leg
 * (relay-leg.ts, issue 15); anything else (TLS starts 0x16) goes to the TLS server, the byte put
 * back. The TLS server holds the certificate (ECDSA or RSA), the ticket keys for resumption
 * (ticket-keys.ts) and the handshake deadline (P10).
 */
import type { Logger } from 'pino';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer, type Server, type TLSSocket, type TlsOptions } from 'node:tls';
import { endThenDestroy, listenOn } from '../common/listen.js';
import type { Counters } from '../common/counters.js';
import { PROTOCOL_VERSION, RENDEZVOUS_ALPN } from '../protocol/constants.js';
import type { BrokerCounter } from './broker-counters.js';
import type { ConnectionTracker } from './connection-tracker.js';
import { SERVER_TLS_CIPHERS } from './tls-ciphers.js';
import { rotateTicketKeys, ticketSecretFromKey, TICKET_KEY_ROTATE_MS, type TicketKeyRotation } from './ticket-keys.js';

export interface BrokerListenerOptions {
  readonly certPem: string;
  readonly keyPem: string;
  readonly port: number;
  readonly host: string;
  readonly handshakeTimeoutMs: number;
  /** Plain relay legs are accepted (relay.plain_legs). */
  readonly plainLegs: boolean;
  readonly tracker: ConnectionTracker;
  readonly counters: Counters<BrokerCounter>;
  readonly logger: Logger;
  /** A TLS connection whose handshake completed. */
  readonly onSecure: (socket: TLSSocket) => void;
  /** A plain relay leg (its first byte is unread again). */
  readonly onPlainLeg: (raw: Socket) => void;
}

export interface BrokerListener {
  /** The listener (what the drain closes). */
  readonly front: NetServer;
  /** A new certificate and key, for the connections from now on; the ticket keys derived again. */
  setCertificate(certPem: string, keyPem: string): void;
  /** The ticket key rotation stops (the listener itself is closed by the drain). */
  stopTickets(): void;
}

/** The TLS settings of the server's context, at start and on a certificate reload alike. */
function secureContextOptions(certPem: string, keyPem: string): TlsOptions {
  return {
    cert: certPem,
    key: keyPem,
    minVersion: 'TLSv1.2',
    ciphers: SERVER_TLS_CIPHERS,
    honorCipherOrder: true,
    // Resumption (ticket-keys.ts): the announced ticket lifetime, in seconds.
    sessionTimeout: TICKET_KEY_ROTATE_MS / 1000,
  };
}

export async function listenBroker(o: BrokerListenerOptions): Promise<BrokerListener> {
  const { counters, tracker, logger } = o;
  // allowHalfOpen: a relayed end-to-end channel half-closes through these connections.
  const tls: Server = createServer({
    ...secureContextOptions(o.certPem, o.keyPem),
    allowHalfOpen: true,
    // Frames are small request/answer exchanges: Nagle would hold one behind the peer's delayed ACK.
    noDelay: true,
    handshakeTimeout: o.handshakeTimeoutMs,
    // Clients and devices that know relay plans say so (constants.ts RENDEZVOUS_ALPN); older ones offer no ALPN.
    ALPNProtocols: [RENDEZVOUS_ALPN],
  });
  let tickets: TicketKeyRotation | null = rotateTicketKeys(tls, ticketSecretFromKey(o.keyPem));
  tls.on('secureConnection', (sock: TLSSocket) => o.onSecure(sock));
  // With a listener here Node leaves the failed socket open (also on ERR_TLS_HANDSHAKE_TIMEOUT,
  // where it would sit in CLOSE_WAIT for good once its peer gave up): destroy it.
  tls.on('tlsClientError', (err: NodeJS.ErrnoException, sock: TLSSocket) => {
    counters.inc(err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshakeTimeout' : 'handshakeFailed');
    sock.destroy();
  });
  tls.on('error', (err) => logger.error({ err: err.message }, 'tls server error'));

  /** The first byte of a new connection decides; it must come within the handshake deadline (P10). */
  function firstByteSwitch(raw: Socket): void {
    raw.on('error', () => undefined);
    const timer = setTimeout(() => {
      counters.inc('handshakeTimeout');
      raw.destroy();
    }, o.handshakeTimeoutMs);
    raw.once('close', () => clearTimeout(timer));
    raw.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      raw.pause();
      raw.unshift(chunk);
      if (chunk[0] === PROTOCOL_VERSION && o.plainLegs) {
        tracker.secured(raw);
        // Half-closed outside a relay session: nothing more to say (as the broker's onSecure does).
        raw.once('end', () => {
          if (tracker.kindOf(raw) !== 'relay') endThenDestroy(raw);
        });
        o.onPlainLeg(raw);
        raw.resume();
      } else {
        // The TLS socket takes this setting from `raw`. Half-open during the handshake, a client that
        // closed before its Finished arrived (one that connects and closes at once) kept its
        // connection for the whole handshake deadline (10 s): its end closes it now.
        raw.allowHalfOpen = false;
        tls.emit('connection', raw);
      }
    });
    raw.resume();
  }

  // noDelay (net servers honour it): a plain relay leg never becomes a TLSSocket whose onSecure sets it,
  // and its end-to-end handshake waited 40 ms behind a delayed ACK without it.
  const front = createNetServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (raw) => {
    if (!tracker.accepted(raw)) return void counters.inc('unidentifiedOverCap');
    firstByteSwitch(raw);
  });
  front.on('error', (err) => logger.error({ err: err.message }, 'tls server error'));
  try {
    await listenOn(front, o.port, o.host);
  } catch (err) {
    tickets.stop();
    throw err;
  }
  return {
    front,
    setCertificate(certPem, keyPem) {
      // A new context drops the ticket keys: derive them again, from the new key (ticket-keys.ts).
      tls.setSecureContext(secureContextOptions(certPem, keyPem));
      tickets?.stop();
      tickets = rotateTicketKeys(tls, ticketSecretFromKey(keyPem));
    },
    stopTickets() {
      tickets?.stop();
      tickets = null;
    },
  };
}
