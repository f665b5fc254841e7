/**
 * Shared plumbing for the security specs (test/security/*.spec.ts): temp dirs, sockets that
 * record what they receive, polling, in-memory loggers and secret detection in captured bytes.
 * Not a spec itself (ava only runs *.spec.js).
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createLogger } from '../../agent/common/logger.js';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { createRegistrationMasterKey } from '../../agent/pki/master-key.js';
import { createRendezvousServer, type RendezvousServer, type RendezvousServerOptions } from '../../agent/server/server.js';

export const LOOPBACK = '127.0.0.1';

/**
 * Where cleanups are registered: a test's ExecutionContext (`t.teardown`), or a `Scope` that a
 * file creates in `test.before` and runs in `test.after.always` (hooks cannot use t.teardown).
 */
export interface Cleanup {
  teardown(fn: () => unknown): void;
}

/** Cleanups for resources shared by the tests of one file; run them (LIFO) in test.after.always. */
export class Scope implements Cleanup {
  private readonly fns: (() => unknown)[] = [];
  teardown(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.fns.splice(0).reverse()) await fn();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A fresh directory under the OS temp dir, removed when the test ends. */
export async function tempDir(t: Cleanup, prefix = 'peerlink-sec-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Poll until `pred` holds (it may be async); throws (failing the test) after `timeoutMs`. */
export async function waitUntil(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000, stepMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(stepMs);
  }
}

/** A throwaway CA, a server certificate for localhost/127.0.0.1 and a master key. */
export interface ServerPki {
  readonly caPem: string;
  readonly caKeyPem: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly masterKey: Buffer;
}

export function createServerPki(hosts: readonly string[] = ['localhost', LOOPBACK]): ServerPki {
  const ca = createCa({ commonName: 'peerlink security-test CA' });
  const server = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts });
  return {
    caPem: ca.certPem,
    caKeyPem: ca.keyPem,
    certPem: server.certPem,
    keyPem: server.keyPem,
    masterKey: createRegistrationMasterKey(),
  };
}

/** An in-process rendezvous server on loopback (ephemeral ports unless given), stopped at teardown. */
export async function startServer(
  t: Cleanup,
  pki: Pick<ServerPki, 'certPem' | 'keyPem' | 'masterKey'>,
  extra: Partial<RendezvousServerOptions> = {},
): Promise<RendezvousServer> {
  const server = createRendezvousServer({
    udpHost: LOOPBACK,
    tlsHost: LOOPBACK,
    udpPort: 0,
    tlsPort: 0,
    certPem: pki.certPem,
    keyPem: pki.keyPem,
    masterKey: pki.masterKey,
    ...extra,
  });
  await server.start();
  t.teardown(() => server.stop());
  return server;
}

/** `startServer` on a loopback setup's ports and keys (scripts/lib/loopback-setup.ts), stopped at teardown. */
export function startLoopbackServer(
  t: Cleanup,
  setup: Pick<ServerPki, 'certPem' | 'keyPem' | 'masterKey'> & { readonly udpPort: number; readonly tlsPort: number },
  extra: Partial<RendezvousServerOptions> = {},
): Promise<RendezvousServer> {
  return startServer(t, setup, { udpPort: setup.udpPort, tlsPort: setup.tlsPort, ...extra });
}

/** A UDP socket on loopback that records every datagram it receives. */
export interface RecordingUdp {
  readonly socket: UdpSocket;
  readonly port: number;
  readonly received: { msg: Buffer; from: RemoteInfo }[];
  send(buf: Buffer, to: { port: number; address?: string }): Promise<void>;
  bytesReceived(): number;
}

/** `address`: another loopback address (127.0.0.2...) is another source to the server's per-source limits. */
export async function recordingUdp(t: Cleanup, address = LOOPBACK): Promise<RecordingUdp> {
  const socket = createSocket('udp4');
  const received: { msg: Buffer; from: RemoteInfo }[] = [];
  socket.on('message', (msg, from) => received.push({ msg, from }));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return {
    socket,
    port: socket.address().port,
    received,
    send: (buf, to) =>
      new Promise<void>((resolve, reject) => socket.send(buf, to.port, to.address ?? LOOPBACK, (err) => (err ? reject(err) : resolve()))),
    bytesReceived: () => received.reduce((n, r) => n + r.msg.length, 0),
  };
}

/** Listen a TCP server on loopback port 0 (or the given port); closed (with its sockets) at teardown. */
export async function listenTcp(t: Cleanup, server: TcpServer, port = 0): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LOOPBACK, () => {
      server.off('error', reject);
      resolve();
    });
  });
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const a = server.address();
  if (!a || typeof a === 'string') throw new Error('no address');
  return a.port;
}

/** Join two sockets both ways, recording each direction; an end or error on either closes both. */
export function recordingRelay(a: Socket, b: Socket, aToB: Buffer[], bToA: Buffer[]): void {
  a.on('data', (d: Buffer) => {
    aToB.push(Buffer.from(d));
    b.write(d);
  });
  b.on('data', (d: Buffer) => {
    bToA.push(Buffer.from(d));
    a.write(d);
  });
  const end = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end).on('close', end);
  b.on('error', end).on('close', end);
}

/** A TCP echo service on loopback; returns its port. */
export async function echoService(t: Cleanup): Promise<number> {
  return listenTcp(
    t,
    createTcpServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    }),
  );
}

/** A production-configured logger (same redaction) that writes JSON lines into memory. */
export function memoryLogger(name: string, level = 'debug'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({
    name,
    level,
    destination: {
      write(s: string) {
        lines.push(s);
      },
    },
  });
  return { logger, lines };
}

/** Textual spellings of a password someone might leak: as printed, without dashes/spaces, normalised. */
export function passwordSpellings(password: string): string[] {
  const plain = password.replace(/[\s-]+/g, '');
  return [...new Set([password, plain, password.toUpperCase(), plain.toUpperCase(), password.toLowerCase(), plain.toLowerCase()])];
}

/** Encodings of a binary key that could end up in bytes, JSON or a log line. */
export function keySpellings(key: Buffer): { label: string; bytes: Buffer }[] {
  const b64 = key.toString('base64');
  return [
    { label: 'raw', bytes: key },
    { label: 'base64', bytes: Buffer.from(b64) },
    { label: 'base64 (unpadded)', bytes: Buffer.from(b64.replace(/=+$/, '')) },
    { label: 'base64url', bytes: Buffer.from(key.toString('base64url')) },
    { label: 'hex', bytes: Buffer.from(key.toString('hex')) },
    { label: 'HEX', bytes: Buffer.from(key.toString('hex').toUpperCase()) },
  ];
}

export interface Secrets {
  /** Passwords (searched case-insensitively, with and without dashes). */
  readonly passwords?: Readonly<Record<string, string>>;
  /** Binary keys (searched raw, as any 8-byte window of the raw key, and in text encodings). */
  readonly keys?: Readonly<Record<string, Buffer>>;
}

/**
 * Every secret found in `hay`, as "name (spelling)". Empty when none. Raw keys are also looked
 * for as any 8-byte window (catches a truncated or partly copied key; a false match between
 * random 32-byte keys and a few kB of data has probability ~2^-50).
 */
export function findSecrets(hay: Buffer | string, secrets: Secrets): string[] {
  const buf = typeof hay === 'string' ? Buffer.from(hay, 'utf8') : hay;
  const lower = buf.toString('latin1').toLowerCase();
  const found: string[] = [];
  for (const [name, pw] of Object.entries(secrets.passwords ?? {})) {
    for (const s of passwordSpellings(pw)) if (lower.includes(s.toLowerCase())) found.push(`${name} (${JSON.stringify(s)})`);
  }
  for (const [name, key] of Object.entries(secrets.keys ?? {})) {
    for (const { label, bytes } of keySpellings(key)) if (buf.includes(bytes)) found.push(`${name} (${label})`);
    for (let i = 0; i + 8 <= key.length; i++) {
      if (buf.includes(key.subarray(i, i + 8))) {
        found.push(`${name} (raw 8-byte window at ${i})`);
        break;
      }
    }
  }
  return found;
}

/**
 * A TLS-terminating proxy with the server's own certificate in front of the real server: the
 * client talks to it as to the server; it records the plaintext both ways.
 */
export async function recordingProxy(t: Cleanup, setup: Pick<ServerPki, 'certPem' | 'keyPem' | 'caPem'>, upstreamPort: number) {
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  const s = createTlsServer({ cert: setup.certPem, key: setup.keyPem }, (down) => {
    const up = tlsConnect({ host: LOOPBACK, port: upstreamPort, servername: 'localhost', ca: setup.caPem });
    recordingRelay(down, up, toServer, toClient);
  });
  const port = await listenTcp(t, s);
  return { port, toServer, toClient };
}
