/**
 * TLS connection from the device, the client or diagnose to the rendezvous server, verifying the
 * server's certificate against the configured CA (P5). Anything else is refused. Lives outside
 * device/ so that the client library carries no agent code.
 */
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { RENDEZVOUS_ALPN, TLS_HANDSHAKE_TIMEOUT_MS } from '../protocol/constants.js';
import { anyAddressFor } from '../nat/tcp-punch.js';

export interface ServerTlsOptions {
  readonly host: string;
  readonly port: number;
  readonly serverName: string;
  readonly caPem: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /**
   * Bind the local end explicitly (an ephemeral port, with SO_REUSEADDR) so that a hole punch can
   * later connect from the same port: its NAT mapping is what the server observed.
   */
  readonly bindLocal?: boolean;
  /** The local address to connect from (a host with several addresses; specs use 127.0.0.x as many sources). */
  readonly localAddress?: string;
  /** Offer the last session ticket from this server (default true); false: a full handshake. */
  readonly resume?: boolean;
  /** Only the server's addresses of this family (a companion connection, companion.ts). */
  readonly family?: 4 | 6;
}

/**
 * Session tickets from the server, one per (address, name, CA), so that the next connection
 * resumes: no certificate crosses, the server signs nothing, we verify no chain (the ticket is
 * from a session whose certificate was verified against the same CA for the same name). A ticket
 * only the real server can open (it holds the ticket key); anyone else at that address gets a
 * full handshake and the usual certificate check. Bounded: a process talks to few servers.
 */
const SESSION_CACHE_MAX = 64;
const sessions = new Map<string, Buffer>();

const caHash = (caPem: string): string => createHash('sha256').update(caPem).digest('hex');

function sessionKey(o: ServerTlsOptions): string {
  return `${o.host}|${o.port}|${o.serverName}|${caHash(o.caPem)}`;
}

/**
 * One TLS context per CA, not one per connection: `ca` in connect() options makes Node build a new
 * OpenSSL context and parse the CA into a new store at every connection, native memory that is
 * freed only when V8 next collects the wrapper. A device serving a request every few seconds piled
 * those up between full GCs: its malloc heap grew by ~30 KiB per request for its first ~200
 * requests before it levelled off (`npm run soak`, /proc/<pid>/smaps; docs/faults.md).
 */
const CONTEXT_CACHE_MAX = 8;
const contexts = new Map<string, SecureContext>();

function contextFor(caPem: string): SecureContext {
  const key = caHash(caPem);
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = createSecureContext({ ca: caPem, minVersion: 'TLSv1.2' });
    contexts.set(key, ctx);
    if (contexts.size > CONTEXT_CACHE_MAX) contexts.delete(contexts.keys().next().value as string);
  }
  return ctx;
}

function rememberSession(key: string, session: Buffer): void {
  sessions.delete(key);
  sessions.set(key, session);
  if (sessions.size > SESSION_CACHE_MAX) sessions.delete(sessions.keys().next().value as string);
}

/** Forget every remembered ticket (tests; a process that changed its CA). */
export function forgetServerSessions(): void {
  sessions.clear();
  contexts.clear();
}

const CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_PURPOSE',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'CERT_CHAIN_TOO_LONG',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'HOSTNAME_MISMATCH',
]);

/**
 * Connect to the server. A name with `bindLocal` is resolved here (A and AAAA, in the resolver's
 * order: RFC 6724 puts IPv6 first where the host has a global IPv6 address) and its addresses are
 * tried in turn, each bound to the unspecified address of its own family: binding 0.0.0.0 for an
 * IPv6 peer fails (EINVAL), and the bind is what lets a hole punch reuse the port. The time
 * allowed is shared out among the addresses left.
 */
export async function connectToServer(o: ServerTlsOptions): Promise<TLSSocket> {
  if (o.family !== undefined && isIP(o.host) !== 0 && isIP(o.host) !== o.family)
    throw new PeerlinkError(ErrorCodes.SERVER_UNREACHABLE, `rendezvous server ${o.host} has no IPv${o.family} address`);
  if (!o.bindLocal || o.localAddress || isIP(o.host) !== 0) return connectOnce(o);
  const timeoutMs = o.timeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS;
  let addresses: string[];
  try {
    addresses = (await lookup(o.host, o.family ? { all: true, family: o.family } : { all: true })).map((a) => a.address).slice(0, 4);
  } catch (err) {
    throw new PeerlinkError(
      ErrorCodes.SERVER_UNREACHABLE,
      `cannot reach rendezvous server ${o.host}:${o.port}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const end = Date.now() + timeoutMs;
  let last: unknown = new PeerlinkError(ErrorCodes.SERVER_UNREACHABLE, `cannot reach rendezvous server ${o.host}:${o.port}: no address`);
  for (let i = 0; i < addresses.length; i++) {
    const left = end - Date.now();
    if (left <= 0) break;
    try {
      return await connectOnce({ ...o, host: addresses[i]!, timeoutMs: Math.max(1, Math.floor(left / (addresses.length - i))) });
    } catch (err) {
      last = err;
      // A certificate refused or an abort ends it: another address of the same server would not help.
      if ((err as PeerlinkError).code !== ErrorCodes.SERVER_UNREACHABLE) throw err;
    }
  }
  throw last;
}

function connectOnce(o: ServerTlsOptions): Promise<TLSSocket> {
  const timeoutMs = o.timeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(abortError(o.signal));
    const options: ConnectionOptions & { allowHalfOpen: boolean; noDelay: boolean } = {
      // A relayed channel half-closes through this connection: a FIN must not end our writing.
      allowHalfOpen: true,
      // Frames are small request/answer exchanges: Nagle would hold one behind the server's delayed ACK.
      noDelay: true,
      host: o.host,
      port: o.port,
      servername: o.serverName,
      // The CA and minimum version (TLS 1.2) live in the shared context.
      secureContext: contextFor(o.caPem),
      rejectUnauthorized: true,
      // Relay plans (RELAY_PLAN, RELAY_RELEASE) only where the server selects this; an older one ignores it.
      ALPNProtocols: [RENDEZVOUS_ALPN],
      ...(o.localAddress ? { localAddress: o.localAddress } : o.bindLocal ? { localAddress: anyAddressFor(o.host) } : {}),
    };
    const key = o.resume === false ? null : sessionKey(o);
    const ticket = key === null ? undefined : sessions.get(key);
    if (ticket) options.session = ticket;
    const sock = tlsConnect(options);
    // tls.connect() does not pass `noDelay` on to its socket (measured: a frame then waited 40 ms).
    sock.setNoDelay(true);
    // TLS 1.3 sends tickets after the handshake; each replaces the last one (it is fresher).
    if (key !== null) sock.on('session', (session: Buffer) => rememberSession(key, session));
    const timer = setTimeout(
      () =>
        fail(
          new PeerlinkError(
            ErrorCodes.SERVER_UNREACHABLE,
            `rendezvous server ${o.host}:${o.port} did not complete TLS within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    const onAbort = (): void => fail(abortError(o.signal!));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    function fail(err: Error): void {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      reject(err);
    }
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      if (CERT_ERRORS.has(code)) {
        fail(
          new PeerlinkError(
            ErrorCodes.UNTRUSTED_CERTIFICATE,
            `rendezvous server certificate refused (${code}): not signed by the configured CA or not for ${o.serverName}`,
            { cause: err },
          ),
        );
      } else {
        fail(
          new PeerlinkError(ErrorCodes.SERVER_UNREACHABLE, `cannot reach rendezvous server ${o.host}:${o.port}: ${err.message}`, {
            cause: err,
          }),
        );
      }
    });
  });
}
