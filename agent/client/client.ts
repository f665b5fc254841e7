/**
 * The client library (patent: request issuance equipment 102).
 *
 *   const client = createClient({ server, caPem, equipmentId, password, service, accept });
 *   const tunnel = await client.open(signal);   // a Duplex to the device's service
 *
 * Each open(): S203 over TLS to the server (certificate checked against the CA, P5), with a
 * request sealed end to end under the access key; then wait for the device's direct TLS-PSK
 * connection (S208) on the peer listener. One client serves many tunnels (e.g. --listen mode).
 */
import { randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.js';
import { abortError, ConfigError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { silentLogger } from '../common/logger.js';
import { rejectUnknownKeys, requireOption } from '../common/options.js';
import type { HostPort } from '../common/endpoint-parse.js';
import { connectToServer } from '../device/server-channel.js';
import {
  DEVICE_ATTACH_TIMEOUT_MS,
  EQUIPMENT_ID_PATTERN,
  PEER_CONNECT_TIMEOUT_MS,
  SERVICE_NAME_PATTERN,
} from '../protocol/constants.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';
import { deriveAccessKey, deriveRequestTagKey, NONCE_BYTES } from '../protocol/keys.js';
import { sealRequest } from '../protocol/request.js';
import { Status, STATUS_ERROR, STATUS_TEXT } from '../protocol/status.js';
import { createPeerListener, type PeerListener } from './peer-listener.js';
import { relayTunnel } from './relay-tunnel.js';
import { mapTcpPort, type MappingMode, type PortMapping } from '../nat/port-mapping.js';

export interface ClientOptions {
  /** The rendezvous server's TLS endpoint. */
  readonly server: HostPort;
  /** Name expected in the server certificate; default: server.host. */
  readonly serverName?: string;
  /** PEM of the CA that signs the server's certificate. */
  readonly caPem: string;
  readonly equipmentId: string;
  /** The device's access secret as printed on its label... */
  readonly password?: string;
  /** ...or the access key derived from it (skips scrypt). */
  readonly accessKey?: Buffer;
  readonly service: string;
  /** Local address for the device's direct connection; default 0.0.0.0:0 (any free port). */
  readonly accept?: HostPort;
  /** The public port the device should dial (a static NAPT or UPnP mapping); default: the accept port. */
  readonly advertisePort?: number;
  /** Ask the router to forward the accept port (UPnP IGD v1/v2, NAT-PMP); default 'off'. */
  readonly mapPort?: MappingMode;
  readonly resultTimeoutMs?: number;
  readonly peerTimeoutMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

const OPTION_KEYS = [
  'server', 'serverName', 'caPem', 'equipmentId', 'password', 'accessKey', 'service', 'accept', 'advertisePort', 'mapPort',
  'resultTimeoutMs', 'peerTimeoutMs', 'clock', 'logger',
] as const;

export interface Tunnel {
  /** The end-to-end encrypted stream to the device's service. */
  readonly stream: TLSSocket;
  /** How the connection was made, for people: e.g. "connected directly: device dialled 4.17.168.2:5000". */
  readonly path: string;
  readonly connectMs: number;
}

export interface Client {
  start(signal?: AbortSignal): Promise<void>;
  open(signal?: AbortSignal): Promise<Tunnel>;
  stop(): Promise<void>;
  /** Where the device's connection is accepted. */
  acceptAddress(): { address: string; port: number };
  /** The router's mapping of the accept port, if one was made. */
  portMapping(): { externalHost: string; externalPort: number; via: 'upnp' | 'natpmp' } | null;
}

function validate(input: ClientOptions) {
  rejectUnknownKeys('client options', input, OPTION_KEYS);
  const problems: string[] = [];
  if (!EQUIPMENT_ID_PATTERN.test(input.equipmentId ?? '')) problems.push(`client options: equipmentId: expected 1-64 characters of A-Z a-z 0-9 . _ -, found ${JSON.stringify(input.equipmentId)}`);
  if (!SERVICE_NAME_PATTERN.test(input.service ?? '')) problems.push(`client options: service: expected a service name (a-z 0-9 . _ -), found ${JSON.stringify(input.service)}`);
  if (input.password === undefined && input.accessKey === undefined) problems.push('client options: password: required (or accessKey)');
  if (input.advertisePort !== undefined && !(Number.isInteger(input.advertisePort) && input.advertisePort > 0 && input.advertisePort < 65536)) {
    problems.push(`client options: advertisePort: expected 1-65535, found ${input.advertisePort}`);
  }
  if (problems.length) throw new ConfigError(problems, { code: ErrorCodes.OPTIONS_INVALID });
  return Object.freeze({
    server: requireOption('client options', 'server', input.server),
    serverName: input.serverName ?? input.server.host,
    caPem: requireOption('client options', 'caPem', input.caPem),
    equipmentId: input.equipmentId,
    password: input.password,
    accessKey: input.accessKey,
    service: input.service,
    accept: input.accept ?? { host: '0.0.0.0', port: 0 },
    advertisePort: input.advertisePort,
    mapPort: input.mapPort ?? 'off',
    resultTimeoutMs: input.resultTimeoutMs ?? DEVICE_ATTACH_TIMEOUT_MS * 2 + 2000,
    peerTimeoutMs: input.peerTimeoutMs ?? PEER_CONNECT_TIMEOUT_MS,
    clock: input.clock ?? systemClock,
    logger: input.logger ?? silentLogger(),
  });
}

export function createClient(input: ClientOptions): Client {
  const o = validate(input);
  const listener: PeerListener = createPeerListener(o.accept);
  let accessKey: Buffer | null = o.accessKey ?? null;
  let started = false;
  let mapping: PortMapping | null = null;

  async function ensureStarted(signal?: AbortSignal): Promise<void> {
    if (started) return;
    if (!accessKey) accessKey = await deriveAccessKey(o.password!, o.equipmentId, signal);
    await listener.start();
    if (o.mapPort !== 'off') {
      mapping = await mapTcpPort({ port: listener.address().port, mode: o.mapPort, logger: o.logger, ...(signal ? { signal } : {}) });
      if (!mapping) o.logger.warn({ mode: o.mapPort }, 'no gateway mapped the accept port; the device may not reach us directly (the relay remains)');
    }
    started = true;
  }

  async function open(signal?: AbortSignal): Promise<Tunnel> {
    await ensureStarted(signal);
    const key = accessKey!;
    const t0 = performance.now();
    const log = o.logger;
    const advertisedPort = o.advertisePort ?? mapping?.externalPort ?? listener.address().port;
    const clientNonce = randomBytes(NONCE_BYTES);

    let resolvePeer!: (s: TLSSocket) => void;
    const peer = new Promise<TLSSocket>((r) => (resolvePeer = r));
    const unexpect = listener.expect({ clientNonce, accessKey: key, equipmentId: o.equipmentId, service: o.service, resolve: resolvePeer });
    try {
      const tls = await connectToServer({ host: o.server.host, port: o.server.port, serverName: o.serverName, caPem: o.caPem, signal });
      const channel = new FrameChannel(tls);
      let status: number;
      let detail: string;
      let relayOffer: Buffer | null = null;
      try {
        const hello = await channel.next(o.resultTimeoutMs, signal);
        // Use the server's clock so a client with a wrong clock still makes fresh requests.
        const serverNow = hello.type === FrameType.HELLO ? hello.serverTimeMs : o.clock.now();
        const sealedRequest = sealRequest(
          { clientNonce, timestampMs: serverNow, equipmentId: o.equipmentId, service: o.service, advertisedPort },
          deriveRequestTagKey(key),
        );
        channel.send({ type: FrameType.CONNECT_REQUEST, equipmentId: o.equipmentId, advertisedPort, sealedRequest });
        log.info({ equipmentId: o.equipmentId, service: o.service, advertisedPort }, 'S203 connection request sent');
        let result = await channel.next(o.resultTimeoutMs, signal);
        if (result.type === FrameType.RELAY_OFFER) {
          relayOffer = result.requestId;
          result = await channel.next(o.resultTimeoutMs, signal);
        }
        if (result.type !== FrameType.CONNECT_RESULT) throw new PeerlinkError(ErrorCodes.PROTOCOL, 'server answered out of turn');
        status = result.status;
        detail = result.detail;
      } finally {
        channel.close();
      }
      if (status !== Status.OK) {
        const code = STATUS_ERROR[status as keyof typeof STATUS_ERROR] ?? ErrorCodes.INTERNAL;
        throw new PeerlinkError(code, detail || STATUS_TEXT[status as keyof typeof STATUS_TEXT]);
      }
      log.info('S207 device accepted the request; waiting for its direct connection (S208)');
      // Race the device's direct dial against the relay: the first channel up wins, the other
      // is cancelled, so nobody waits for a dead path.
      const loser = new AbortController();
      const onOuterAbort = (): void => loser.abort(signal?.reason);
      signal?.addEventListener('abort', onOuterAbort, { once: true });
      const direct = peer.then((stream) => ({ stream, via: 'direct' as const }));
      const attempts: Promise<{ stream: TLSSocket; via: 'direct' | 'relay' }>[] = [direct];
      if (relayOffer) {
        const server = { host: o.server.host, port: o.server.port, serverName: o.serverName, caPem: o.caPem };
        const expected = { clientNonce, accessKey: key, equipmentId: o.equipmentId, service: o.service };
        attempts.push(relayTunnel(server, relayOffer, expected, o.peerTimeoutMs, loser.signal).then((stream) => ({ stream, via: 'relay' as const })));
      }
      let won: { stream: TLSSocket; via: 'direct' | 'relay' };
      try {
        won = await withDeadline(firstFulfilled(attempts), o.peerTimeoutMs, signal, () =>
          new PeerlinkError(
            ErrorCodes.PEER_TIMEOUT,
            `the device accepted but no channel came up within ${o.peerTimeoutMs} ms: neither its direct connection to port ${advertisedPort}${relayOffer ? ' nor the relay' : ''}`,
          ),
        );
      } finally {
        signal?.removeEventListener('abort', onOuterAbort);
      }
      if (won.via === 'direct') loser.abort();
      // A channel that came up a moment too late is closed, not leaked.
      for (const a of attempts) void a.then((r) => r !== won && r.stream.destroy(), () => undefined);
      const { stream } = won;
      const connectMs = performance.now() - t0;
      const from = `${stream.remoteAddress}:${stream.remotePort}`;
      const path =
        won.via === 'direct'
          ? `connected directly: device dialled port ${advertisedPort} (from ${from})`
          : `relayed via server: the device could not dial port ${advertisedPort} directly (end-to-end encrypted; the server sees ciphertext only)`;
      log.info({ connectMs: Math.round(connectMs), via: won.via }, won.via === 'direct' ? 'S208 direct channel up; S209 data' : 'channel up through the relay; S209 data');
      return { stream, path, connectMs };
    } finally {
      unexpect();
    }
  }

  return {
    start: ensureStarted,
    open,
    async stop() {
      await mapping?.release().catch(() => undefined);
      mapping = null;
      await listener.stop();
      started = false;
    },
    portMapping: () => (mapping ? { externalHost: mapping.externalHost, externalPort: mapping.externalPort, via: mapping.via } : null),
    acceptAddress: () => listener.address(),
  };
}

/** The first promise to fulfil; rejects only when all have rejected (with the last reason). */
function firstFulfilled<T>(ps: readonly Promise<T>[]): Promise<T> {
  return new Promise((resolve, reject) => {
    let failed = 0;
    for (const p of ps) {
      p.then(resolve, (err) => {
        if (++failed === ps.length) reject(err);
      });
    }
  });
}

function withDeadline<T>(p: Promise<T>, ms: number, signal: AbortSignal | undefined, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => finish(() => reject(onTimeout())), ms);
    const onAbort = (): void => finish(() => reject(abortError(signal!)));
    signal?.addEventListener('abort', onAbort, { once: true });
    function finish(f: () => void): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      f();
    }
    p.then(
      (v) => finish(() => resolve(v)),
      (e) => finish(() => reject(e)),
    );
  });
}

/** One tunnel, then the client is stopped when the stream closes. The API's simplest form. */
export async function connect(options: ClientOptions, signal?: AbortSignal): Promise<Tunnel> {
  const client = createClient(options);
  try {
    const tunnel = await client.open(signal);
    tunnel.stream.once('close', () => void client.stop());
    return tunnel;
  } catch (err) {
    await client.stop();
    throw err;
  }
}
