/**
 * S208/S209: dial the client directly and join the connection to the local service.
 * The direct channel is TLS 1.3 with an external PSK derived from the access key and both
 * nonces (P4): only a holder of the password can complete it, so neither the server nor
 * anyone on the path can read it or stand in the middle.
 */
import { keepTunnelAlive } from '../common/tunnel-liveness.js';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { connect as netConnect, Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket, type ConnectionOptions } from 'node:tls';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import type { HostPort } from '../common/endpoint-parse.js';
import type { Endpoint } from '../protocol/address.js';
import { tunnelClientContext } from '../protocol/tunnel-tls.js';
import { TUNNEL_KEEPALIVE_MS, TUNNEL_PSK_IDENTITY_PREFIX } from '../protocol/constants.js';
import { deriveTunnelPsk, NONCE_BYTES } from '../protocol/keys.js';
import { carrierStream } from '../common/carrier.js';

export interface DialOptions {
  readonly to: Endpoint;
  readonly accessKey: Buffer;
  readonly clientNonce: Buffer;
  readonly equipmentId: string;
  readonly service: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Run the channel over this stream (a relay connection) instead of dialling `to`. */
  readonly over?: Duplex;
}

export function pskIdentity(clientNonce: Uint8Array, deviceNonce: Uint8Array): string {
  return `${TUNNEL_PSK_IDENTITY_PREFIX}${Buffer.from(clientNonce).toString('hex')}:${Buffer.from(deviceNonce).toString('hex')}`;
}

/**
 * What the channel runs on when it does not dial: a plain TCP connection (a punch, a reverse dial, a
 * plain relay leg) as it is, so that OpenSSL reads and writes its socket natively as on a dialled
 * channel (a JS stream between them cost every byte two more passes through JS: relayed, the agent
 * spent 6.1 CPU-seconds per GB against 4.9 direct, npm run bench -- server --only tunnel); a relay
 * join over TLS through carrierStream (carrier.ts says why).
 */
function carrier(over: Duplex): Duplex {
  return over instanceof Socket && !(over instanceof TLSSocket) ? over : carrierStream(over);
}

/** Open the end-to-end channel to the client (the device is the TLS client: it dials). */
export function dialClient(o: DialOptions): Promise<TLSSocket> {
  const deviceNonce = randomBytes(NONCE_BYTES);
  const psk = deriveTunnelPsk(o.accessKey, o.clientNonce, deviceNonce, o.equipmentId, o.service);
  const identity = pskIdentity(o.clientNonce, deviceNonce);
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(abortError(o.signal));
    const options: ConnectionOptions & { allowHalfOpen: boolean; noDelay: boolean } = {
      // Half-close must cross the tunnel (Node honours it; its type definitions lag).
      allowHalfOpen: true,
      // The handshake, the chosen byte and small exchanges: no Nagle wait behind a delayed ACK.
      noDelay: true,
      ...(o.over ? { socket: carrier(o.over) } : { host: o.to.address, port: o.to.port }),
      pskCallback: () => ({ psk, identity }),
      // TLS 1.3 with TUNNEL_CIPHER only, one context per process.
      secureContext: tunnelClientContext(),
      // Authentication is the PSK alone. A peer that declines the PSK and shows a certificate
      // (even a publicly trusted one) must be refused: Node calls this only for certificates.
      checkServerIdentity: () => new Error('the direct channel accepts only the pre-shared key, never a certificate'),
    };
    const sock = tlsConnect(options);
    sock.setNoDelay(true); // tls.connect() ignores the `noDelay` option
    const timer = setTimeout(
      () => fail(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `no connection to the client within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    const onAbort = (): void => fail(abortError(o.signal!));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    function done(): void {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
    }
    function fail(err: Error): void {
      done();
      sock.destroy();
      reject(err);
    }
    sock.once('secureConnect', () => {
      // Belt and braces: a session with a peer certificate did not use our PSK.
      if (Object.keys(sock.getPeerCertificate() ?? {}).length > 0) {
        fail(new PeerlinkError(ErrorCodes.AUTH_FAILED, 'the client presented a certificate instead of the pre-shared key'));
        return;
      }
      done();
      sock.off('error', fail);
      // On the TCP connection that carries the channel: ours, or the punched / reverse / relay one.
      const carrier = (o.over as Partial<Socket> | undefined) ?? sock;
      if (carrier instanceof Socket) keepTunnelAlive(carrier);
      else carrier.setKeepAlive?.(true, TUNNEL_KEEPALIVE_MS);
      resolve(sock);
    });
    sock.once('error', fail);
  });
}

/** Connect to the appliance's local service (before answering, so a dead service is reported). */
export function connectService(target: HostPort, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new PeerlinkError(
          ErrorCodes.SERVICE_UNAVAILABLE,
          `local service ${target.host}:${target.port} did not accept within ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.pause();
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(
        new PeerlinkError(ErrorCodes.SERVICE_UNAVAILABLE, `local service ${target.host}:${target.port}: ${err.message}`, { cause: err }),
      );
    });
  });
}
