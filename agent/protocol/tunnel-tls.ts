/**
 * The TLS contexts of the end-to-end channel (TLS 1.3, external PSK, TUNNEL_CIPHER), one per process
 * and side instead of one per connection: without `secureContext`, Node builds a new OpenSSL context
 * (and loads the default CA store into it) for every tunnel, ~0.5 ms of CPU per request on each end
 * (`npm run bench -- server --only connect` with PEERLINK_NODE_ARGS=--cpu-prof). The PSK, its
 * identity and the certificate refusal stay per connection (pskCallback, checkServerIdentity).
 *
 * The shared server context must not let one tunnel resume another: a per-connection context made
 * its session tickets worthless, a shared one would accept them on the next tunnel and skip that
 * tunnel's own PSK (bound to its nonces). SSL_OP_NO_TICKET turns tickets into session ids looked up
 * in a cache that Node keeps disabled (no 'newSession' listener): every tunnel is a full PSK
 * handshake (test/security/tunnel-no-resumption.spec.ts).
 */
import { constants } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { TUNNEL_CIPHER } from './constants.js';

let client: SecureContext | undefined;
let server: SecureContext | undefined;

/** The device's side (it dials: the TLS client). */
export function tunnelClientContext(): SecureContext {
  client ??= createSecureContext({ ciphers: TUNNEL_CIPHER, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  return client;
}

/** The client's side (it accepts: the TLS server); no session resumption. */
export function tunnelServerContext(): SecureContext {
  server ??= createSecureContext({
    ciphers: TUNNEL_CIPHER,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    secureOptions: constants.SSL_OP_NO_TICKET,
  });
  return server;
}
