/**
 * The agent's UDP side (S201/S202A): registers from one socket on a fixed interval so the NAT
 * mapping stays open and the server's list stays current (also after the router's public
 * address changes), learns its public mapping and the server's clock from each ack, and
 * receives the server's connection-request notifications (packet 205) on the same socket,
 * i.e. through the same NAT mapping.
 */
import { bindUdp, closeUdp } from '../common/listen.js';
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import {
  REGISTER_ACK_TIMEOUT_MS,
  REGISTER_CLOCK_WINDOW_MS,
  UDP_TYPE_COOKIE,
  UDP_TYPE_MAPPING_CHECK,
  UDP_TYPE_NOTIFY,
  UDP_TYPE_REGISTER_ACK,
} from '../protocol/constants.js';
import type { Keepalive } from './adaptive-keepalive.js';
import type { Wake } from '../protocol/wake.js';
import { equalBytes } from '../protocol/keys.js';
import {
  AckStatus,
  encodeRefuse,
  encodeRegister,
  parseUdpPacket,
  REGISTER_NONCE_BYTES,
  verifyTag,
  type Cookie,
  type Notify,
  type RefuseReasonValue,
  type RegisterAck,
} from '../protocol/udp-packets.js';

export const REGISTRAR_COUNTERS = [
  'sent',
  'acked',
  'ackTimeouts',
  'cookies',
  'timeFetched',
  'refusals',
  'malformed',
  'badTag',
  'foreignSource',
  'notifications',
  'duplicateNotifications',
] as const;
export type RegistrarCounter = (typeof REGISTRAR_COUNTERS)[number];

/** After a lost ack, retry sooner than the interval: 1 s, 2 s, 4 s ... up to the interval. */
export const RETRY_BASE_MS = 1_000;
const NOTIFY_DEDUP_MS = 60_000;
/** A cookie is answered at once this many times in a row; then at the normal pace (a server that keeps asking). */
export const COOKIE_RETRIES_AT_ONCE = 3;
/** Unanswered registrations in a row after which the server's time is asked over TLS. */
export const TIME_FETCH_AFTER_TIMEOUTS = 2;
/** At most one TLS time fetch per this interval. */
export const TIME_FETCH_MIN_INTERVAL_MS = 60_000;

export type RegistrationState = 'starting' | 'registered' | 'unreachable';

export interface RegistrarStatus {
  readonly state: RegistrationState;
  readonly publicEndpoint: Endpoint | null;
  readonly server: Endpoint | null;
  readonly lastAckMs: number | null;
  readonly clockOffsetMs: number;
}

export interface RegistrarOptions {
  readonly equipmentId: string;
  /** The identity's generation (identity-name.ts): named in every packet, so the server picks its key; absent: 0. */
  readonly generation?: number;
  readonly registrationKey: Buffer;
  readonly serverHost: string;
  readonly serverPort: number;
  readonly intervalMs: number;
  readonly localPort: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** A new request's notification, with the client's wake proof (unchecked: the agent checks it, P9). */
  readonly onNotify: (requestId: Buffer, wake: Wake) => void;
  readonly onStatus?: (status: RegistrarStatus) => void;
  readonly ackTimeoutMs?: number;
  /** Adaptive keepalive (adaptive-keepalive.ts): decides the interval instead of `intervalMs`. */
  readonly keepalive?: Keepalive;
  /**
   * The server's time over its CA-verified TLS port (the HELLO), asked when registrations go
   * unanswered: the server stays silent to a new source whose timestamp is older than the last
   * one it accepted (it could be a replay, P6), which is what a device whose clock fell behind
   * sends. Default: none.
   */
  readonly fetchServerTime?: (signal: AbortSignal) => Promise<number>;
  /**
   * The address family registered over (default 4): the server name is resolved to that family
   * only and the socket is of that family (dual-registrar.ts runs one per family).
   */
  readonly family?: 4 | 6;
  /**
   * A family the device may not have (IPv6 beside IPv4): no address of it for the server, or no
   * answer, is logged at debug level only, and the server's time is not fetched for it.
   */
  readonly optional?: boolean;
  /** Name resolution (default: the system's, dns.lookup); tests inject one. */
  readonly lookup?: (host: string, family: 4 | 6) => Promise<string>;
}

export interface Registrar {
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): RegistrarStatus;
  /** The device's estimate of the server's clock (used for request freshness). */
  serverNow(): number;
  /** Adopt a server time learnt over an authenticated channel. */
  observeServerTime(serverTimeMs: number, localMs: number): void;
  /** Register now (e.g. after a settings reload). */
  registerNow(): void;
  /** Tell the server we will not attach for this request (its wake proof failed, P9). */
  refuse(requestId: Buffer, reason: RefuseReasonValue): void;
  readonly counters: Counters<RegistrarCounter>;
}

export function createRegistrar(options: RegistrarOptions): Registrar {
  // The identity's generation, named in every packet (identity-name.ts); generation 0 adds nothing.
  const gen = options.generation ? { generation: options.generation } : {};
  const { clock, logger } = options;
  const ackTimeoutMs = options.ackTimeoutMs ?? REGISTER_ACK_TIMEOUT_MS;
  const counters = new Counters(REGISTRAR_COUNTERS);
  const family = options.family ?? 4;
  let socket: Socket | null = null;
  let server: Endpoint | null = null;
  let state: RegistrationState = 'starting';
  let publicEndpoint: Endpoint | null = null;
  let lastAckMs: number | null = null;
  let offsetMs = 0;
  let lastTimestamp = 0;
  let outstanding: { nonce: Buffer; sentAt: number; timestampMs: number } | null = null;
  /** The server's cookie for our mapping (return routability, P6); sent with every registration. */
  let cookie: Buffer | undefined;
  let cookiesInARow = 0;
  let lastTimeFetchMs = -Infinity;
  let timeFetch = new AbortController();
  let failures = 0;
  let skewRetried = false;
  let nextTimer: NodeJS.Timeout | undefined;
  let ackTimer: NodeJS.Timeout | undefined;
  const seenNotifies = new Map<string, number>();
  let stopped = false;

  const status = (): RegistrarStatus => Object.freeze({ state, publicEndpoint, server, lastAckMs, clockOffsetMs: offsetMs });
  const setState = (s: RegistrationState): void => {
    if (s !== state) {
      state = s;
      options.onStatus?.(status());
    }
  };

  function schedule(delayMs: number): void {
    clearTimeout(nextTimer);
    if (stopped) return;
    nextTimer = setTimeout(() => void sendRegistration(), delayMs);
  }

  async function resolveServer(): Promise<Endpoint | null> {
    try {
      // Resolved on every round: a server that moves is followed without a restart.
      const address = options.lookup
        ? await options.lookup(options.serverHost, family)
        : (await lookup(options.serverHost, { family })).address;
      return { address: normalizeAddress(address), port: options.serverPort };
    } catch (err) {
      logger[options.optional ? 'debug' : 'warn'](
        { host: options.serverHost, family, err: (err as Error).message },
        'cannot resolve the rendezvous server',
      );
      return null;
    }
  }

  async function sendRegistration(): Promise<void> {
    if (stopped || !socket) return;
    const target = await resolveServer();
    if (stopped || !socket) return;
    if (!target) {
      // No address of an optional family (an IPv4-only server name): look again next interval, quietly.
      if (options.optional) return schedule(options.intervalMs);
      onAckTimeout();
      return;
    }
    server = target;
    if (options.keepalive) {
      await options.keepalive.beforeRefresh(target);
      if (stopped || !socket) return;
    }
    const now = clock.now();
    // Strictly increasing, in server time: the server rejects anything not newer (replay defence).
    const timestampMs = Math.max(Math.floor(now + offsetMs), lastTimestamp + 1);
    lastTimestamp = timestampMs;
    const nonce = randomBytes(REGISTER_NONCE_BYTES);
    outstanding = { nonce, sentAt: now, timestampMs };
    const packet = encodeRegister(
      { equipmentId: options.equipmentId, ...gen, timestampMs, nonce, ...(cookie ? { cookie } : {}) },
      options.registrationKey,
    );
    socket.send(packet, target.port, target.address, (err) => {
      if (err) logger.debug({ err: err.message }, 'registration send failed');
    });
    counters.inc('sent');
    logger.debug({ server: `${target.address}:${target.port}` }, 'S201 registration sent');
    clearTimeout(ackTimer);
    ackTimer = setTimeout(onAckTimeout, ackTimeoutMs);
  }

  function onAckTimeout(): void {
    outstanding = null;
    counters.inc('ackTimeouts');
    failures++;
    if (state !== 'unreachable')
      logger[options.optional ? 'info' : 'warn'](
        { family, failures, counters: counters.snapshot() },
        'no acknowledgement from the rendezvous server',
      );
    setState('unreachable');
    schedule(Math.min(options.intervalMs, RETRY_BASE_MS * 2 ** Math.min(failures - 1, 10)));
    if (failures >= TIME_FETCH_AFTER_TIMEOUTS && !options.optional) void fetchTime();
  }

  /** Ask the server's time over TLS (see `fetchServerTime`), then register again at once. */
  async function fetchTime(): Promise<void> {
    const now = clock.now();
    if (!options.fetchServerTime || stopped || now - lastTimeFetchMs < TIME_FETCH_MIN_INTERVAL_MS) return;
    lastTimeFetchMs = now;
    try {
      const serverTimeMs = await options.fetchServerTime(timeFetch.signal);
      if (stopped) return;
      counters.inc('timeFetched');
      const next = Math.round(serverTimeMs - clock.now());
      if (Math.abs(next - offsetMs) > REGISTER_CLOCK_WINDOW_MS / 2) {
        logger.warn(
          { offsetMs: next },
          'registrations unanswered and our clock differs from the server (time read over TLS); adopting server time',
        );
        lastTimestamp = 0;
      }
      offsetMs = next;
      schedule(0);
    } catch (err) {
      logger.debug({ err: (err as Error).message }, 'could not read the server time over TLS');
    }
  }

  /** An answer (ack or cookie) to the outstanding registration: adopt its server time; returns the round trip. */
  function answered(serverTimeMs: number, now: number): number {
    const sentAt = outstanding!.sentAt;
    const rttMs = now - sentAt;
    // The server stamped its time roughly half way through the round trip.
    // Whole milliseconds: timestamps go on the wire as integers (a fractional one once crashed the agent).
    offsetMs = Math.round(serverTimeMs - (sentAt + rttMs / 2));
    return rttMs;
  }

  /**
   * The server does not yet trust our mapping (new, or moved): adopt its time, keep its cookie and
   * register again with it at once (return routability, P6).
   */
  function onCookie(c: Cookie): void {
    if (!outstanding || !equalBytes(c.nonce, outstanding.nonce)) return;
    clearTimeout(ackTimer);
    answered(c.serverTimeMs, clock.now());
    // Our timestamp was outside the server's window: start again from server time.
    if (Math.abs(outstanding.timestampMs - c.serverTimeMs) > REGISTER_CLOCK_WINDOW_MS) lastTimestamp = 0;
    outstanding = null;
    cookie = Buffer.from(c.cookie); // a copy: the parsed field is a view into the datagram
    counters.inc('cookies');
    cookiesInARow++;
    schedule(cookiesInARow <= COOKIE_RETRIES_AT_ONCE ? 0 : Math.min(options.intervalMs, RETRY_BASE_MS * 2 ** Math.min(cookiesInARow, 10)));
  }

  function onAck(ack: RegisterAck): void {
    if (!outstanding || !equalBytes(ack.nonce, outstanding.nonce)) return; // late or foreign ack
    const now = clock.now();
    clearTimeout(ackTimer);
    const rttMs = answered(ack.serverTimeMs, now);
    outstanding = null;
    if (ack.status === AckStatus.CLOCK_SKEW) {
      logger.warn({ offsetMs: Math.round(offsetMs) }, 'clock differs from the server; adopting server time');
      lastTimestamp = 0;
      if (!skewRetried) {
        skewRetried = true;
        schedule(0);
      } else schedule(Math.min(options.intervalMs, RETRY_BASE_MS));
      return;
    }
    skewRetried = false;
    cookiesInARow = 0;
    counters.inc('acked');
    failures = 0;
    lastAckMs = now;
    const changed = !publicEndpoint || publicEndpoint.address !== ack.observed.address || publicEndpoint.port !== ack.observed.port;
    publicEndpoint = ack.observed;
    if (changed) {
      logger.info(
        { publicEndpoint: `${ack.observed.address}:${ack.observed.port}`, rttMs },
        'S202 registered; server sees us at this public address',
      );
      options.onStatus?.(status());
    }
    setState('registered');
    schedule(options.keepalive ? options.keepalive.afterAck(ack.observed) : options.intervalMs);
  }

  function onNotify(n: Notify): void {
    const key = n.requestId.toString('hex');
    const now = clock.now();
    for (const [k, t] of seenNotifies) if (t < now) seenNotifies.delete(k);
    if (seenNotifies.has(key)) {
      counters.inc('duplicateNotifications'); // the server repeats notifications until we connect
      return;
    }
    seenNotifies.set(key, now + NOTIFY_DEDUP_MS);
    counters.inc('notifications');
    logger.info({ requestId: key.slice(0, 12) }, 'S205 connection-request notification received');
    options.onNotify(Buffer.from(n.requestId), n.wake);
  }

  function onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    if (!server || normalizeAddress(rinfo.address) !== server.address || rinfo.port !== server.port) {
      counters.inc('foreignSource');
      return;
    }
    let parsed;
    try {
      parsed = parseUdpPacket(msg);
    } catch {
      counters.inc('malformed');
      return;
    }
    if (!verifyTag(parsed, options.registrationKey)) {
      counters.inc('badTag');
      return;
    }
    if (parsed.packet.type === UDP_TYPE_REGISTER_ACK) onAck(parsed.packet);
    else if (parsed.packet.type === UDP_TYPE_COOKIE) onCookie(parsed.packet);
    else if (parsed.packet.type === UDP_TYPE_NOTIFY) onNotify(parsed.packet);
    else if (parsed.packet.type === UDP_TYPE_MAPPING_CHECK) options.keepalive?.onMappingCheck(parsed.packet.nonce);
    else counters.inc('malformed');
  }

  return {
    counters,
    status,
    serverNow: () => clock.now() + offsetMs,
    observeServerTime(serverTimeMs, localMs) {
      offsetMs = Math.round(serverTimeMs - localMs);
    },
    registerNow: () => schedule(0),
    refuse(requestId, reason) {
      if (!socket || !server) return;
      counters.inc('refusals');
      socket.send(
        encodeRefuse({ equipmentId: options.equipmentId, ...gen, requestId, reason }, options.registrationKey),
        server.port,
        server.address,
        (err) => {
          if (err) logger.debug({ err: err.message }, 'refusal not sent');
        },
      );
    },
    async start() {
      stopped = false;
      timeFetch = new AbortController();
      // An IPv6 socket for IPv6 only: the IPv4 registrar may hold the same port number.
      const s = createSocket(family === 6 ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
      s.on('message', onMessage);
      s.on('error', (err) => logger.error({ err: err.message }, 'udp socket error'));
      await bindUdp(s, options.localPort);
      socket = s;
      await options.keepalive?.start();
      schedule(0);
    },
    async stop() {
      stopped = true;
      timeFetch.abort();
      clearTimeout(nextTimer);
      clearTimeout(ackTimer);
      const s = socket;
      socket = null;
      await options.keepalive?.stop();
      if (s) await closeUdp(s);
    },
  };
}
