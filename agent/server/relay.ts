/**
 * The relay: the last resort when the device cannot dial the client (the prior art the patent
 * improves on, kept because real networks need it). The server pairs the client's and the
 * device's TLS connections for one offered request and copies bytes between them. What it
 * copies is the end-to-end TLS-PSK channel (P4): the relay sees only ciphertext.
 * Limits (concurrent sessions, per device, per source, bytes per second each way, duration, idle
 * time) are enforced here, so that one password holder cannot fill the relay for everyone (P14).
 * The client's join is bound to a token the server gave it over its own TLS connection: the
 * request ID alone, which the UDP NOTIFY carries in the clear, does not let anyone join as it.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { Counters } from '../common/counters.js';
import { RELAY_JOIN_TOKEN_BYTES } from '../protocol/constants.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import type { Writable } from 'node:stream';
import { sourceKey } from './rate-limiter.js';
import { systemTimers, type TimerHandle, type Timers } from '../common/timers.js';
import { reset, throttledCopy } from './relay-copy.js';

export const RELAY_MAX_SESSIONS = 100;
/** Per direction, per session: enough for a remote control UI, not for hosting a video farm. */
export const RELAY_BYTES_PER_SECOND = 2 * 1024 * 1024;
export const RELAY_MAX_DURATION_MS = 60 * 60_000;
export const RELAY_JOIN_TIMEOUT_MS = 20_000;
/** Sessions (offered or paired) one device may hold: a few for its owner, not the whole relay. */
export const RELAY_MAX_SESSIONS_PER_DEVICE = 4;
/** Sessions (offered or paired) one client source (IPv4 address, IPv6 /64) may hold. */
export const RELAY_MAX_SESSIONS_PER_SOURCE = 8;
/**
 * A paired session with no byte either way for this long is cut. TCP keepalives (30 s) are
 * answered by the kernel and never reach the relay, so an idle ssh prompt counts as idle: ten
 * minutes leaves it alone through an ordinary pause; ssh's ServerAliveInterval keeps it for longer.
 */
export const RELAY_IDLE_TIMEOUT_MS = 10 * 60_000;
/** Offers waiting at once, whatever their sources: bounds the table. */
export const RELAY_MAX_OFFERS = 10_000;

export const RELAY_COUNTERS = [
  'offered',
  'paired',
  'expired',
  /** An offer the client left unpaired (another path won): its place is free at once. */
  'withdrawn',
  /** An offer the client released without joining (RELAY_RELEASE: another path won): its place is free at once. */
  'released',
  /** A RELAY_RELEASE that named no offer made over that connection (or one the client had joined). */
  'releaseIgnored',
  /** RELAY_NOW sent: the device joined before a client that was waiting for its planned time. */
  'toldNow',
  'refusedFull',
  'refusedUnknown',
  /** Offers not made: the device or the client's source holds its share already (P14). */
  'refusedPerDevice',
  'refusedPerSource',
  /** Client joins without the offer's token (the request ID alone is in the clear in the NOTIFY). */
  'refusedToken',
  'bytes',
  'cutForDuration',
  'cutIdle',
] as const;

export interface RelayLimits {
  readonly maxSessions: number;
  readonly bytesPerSecond: number;
  readonly maxDurationMs: number;
  /** How long an offer waits for both sides to join. */
  readonly joinTimeoutMs: number;
  readonly maxSessionsPerDevice: number;
  readonly maxSessionsPerSource: number;
  readonly idleTimeoutMs: number;
  /**
   * Accept plain relay legs (relay-leg.ts, issue 15): joins without TLS around the end-to-end channel.
   * Off, a leg's first frame goes to TLS as before and its joiner falls back to a TLS join.
   */
  readonly plainLegs: boolean;
}

export const RELAY_LIMIT_KEYS: readonly (keyof RelayLimits)[] = [
  'maxSessions',
  'bytesPerSecond',
  'maxDurationMs',
  'joinTimeoutMs',
  'maxSessionsPerDevice',
  'maxSessionsPerSource',
  'idleTimeoutMs',
  'plainLegs',
];

/** What the broker tells the client: a token to join with, or why no relay is offered. */
export type RelayOffer =
  { readonly ok: true; readonly joinToken: Buffer } | { readonly ok: false; readonly reason: 'per_device' | 'per_source' | 'full' };

/** A joined side: its TLS connection, or a plain relay leg (relay-leg.ts, issue 15). */
interface Side {
  readonly channel: FrameChannel;
  readonly socket: Socket;
}

interface Slot {
  readonly equipmentId: string;
  /**
   * With a relay plan: the client connection the offer was made over, the only one that may release
   * it (RELAY_RELEASE), and the one told when the device waits first (RELAY_NOW).
   */
  readonly offeredOn: FrameChannel | undefined;
  readonly source: string;
  readonly joinToken: Buffer;
  /** Its share (per device, per source) was given back. */
  released: boolean;
  /** RELAY_NOW was sent (once: a device that joins again does not make it write more). */
  toldNow?: boolean;
  client?: Side;
  device?: Side;
  readonly timer: TimerHandle;
}

export interface Relay {
  /** `clientAddress`: as observed; the per-source share is keyed by sourceKey() (IPv6 by /64). */
  /**
   * `offeredOn` (a client given the device's relay plan): its connection, which alone may release the
   * offer unjoined (release()), and is told RELAY_NOW should the device join first.
   */
  offer(requestId: Buffer, equipmentId: string, clientAddress: string, offeredOn?: FrameChannel): RelayOffer;
  /**
   * The client says another path won (RELAY_RELEASE) on `on`: an offer made over that connection,
   * which its client has not joined, gives its place back now (a device waiting at it is closed).
   * Anything else is ignored: another connection cannot release someone's offer. Returns whether it did.
   */
  release(requestId: Buffer, on: FrameChannel): boolean;
  /**
   * A client must present the offer's token (over TLS), or prove it holds it (a plain leg: `joinToken`
   * is then a check of the token); a device has proved itself (equipmentId) already.
   */
  join(role: 'client', requestId: Buffer, joinToken: Buffer | ((token: Buffer) => boolean), side: Side): void;
  join(role: 'device', requestId: Buffer, equipmentId: string, side: Side): void;
  /** An offer for this request is waiting here. */
  has(requestId: Buffer): boolean;
  /** The offer's join token, the key a plain client leg proves (relay-leg.ts); undefined: no such offer. */
  clientKey(requestId: Buffer): Buffer | undefined;
  readonly active: number;
  /** Plain legs are accepted (RelayLimits.plainLegs). */
  readonly plainLegs: boolean;
  stop(): void;
  readonly counters: Counters<(typeof RELAY_COUNTERS)[number]>;
}

/**
 * Send at once, even on a connection corked while it serves the client's next request
 * (client-connection.ts): nothing of that answer is buffered before it is complete, so only this goes.
 */
function sendNow(channel: FrameChannel, frame: Frame): void {
  const socket = channel.socket as Writable;
  const corked = socket.writableCorked ?? 0;
  for (let i = 0; i < corked; i++) socket.uncork();
  channel.send(frame);
  for (let i = 0; i < corked; i++) socket.cork();
}

/** `timers` runs the join deadline and each session's duration and idle limits (default: the real clock). */
export function createRelay(limits: RelayLimits, logger: Logger, timers: Timers = systemTimers): Relay {
  const counters = new Counters(RELAY_COUNTERS);
  const slots = new Map<string, Slot>();
  const live = new Set<Socket>();
  // Shares held (offers waiting + sessions paired), by device and by source. An entry lives only
  // while its count is above zero, so these are bounded by the offers and sessions themselves.
  const perDevice = new Map<string, number>();
  const perSource = new Map<string, number>();
  let active = 0;

  const add = (m: Map<string, number>, k: string, by: number): void => {
    const n = (m.get(k) ?? 0) + by;
    if (n > 0) m.set(k, n);
    else m.delete(k);
  };
  function release(slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    add(perDevice, slot.equipmentId, -1);
    add(perSource, slot.source, -1);
  }

  function pair(key: string, slot: Slot): void {
    timers.clearTimeout(slot.timer);
    slots.delete(key);
    const c = slot.client!;
    const d = slot.device!;
    if (active >= limits.maxSessions) {
      counters.inc('refusedFull');
      release(slot);
      logger.warn({ active, max: limits.maxSessions }, 'relay full; refusing a session');
      reset(c.socket);
      reset(d.socket);
      return;
    }
    active++;
    counters.inc('paired');
    for (const s of [c, d]) {
      s.channel.send({ type: FrameType.RELAY_PAIRED });
      s.channel.release();
      live.add(s.socket);
    }
    const started = timers.now();
    let bytes = 0;
    let lastByteAtMs = started;
    const count = (n: number): void => {
      bytes += n;
      lastByteAtMs = timers.now();
      counters.inc('bytes', n);
    };
    throttledCopy(c.socket, d.socket, limits.bytesPerSecond, count);
    throttledCopy(d.socket, c.socket, limits.bytesPerSecond, count);
    c.socket.resume();
    d.socket.resume();
    const cut = timers.setTimeout(() => {
      counters.inc('cutForDuration');
      logger.info({ equipmentId: slot.equipmentId, maxDurationMs: limits.maxDurationMs }, 'relay session cut at its duration limit');
      reset(c.socket);
      reset(d.socket);
    }, limits.maxDurationMs);
    cut.unref(); // the sockets hold the process, not the limit
    // Idle: checked when the quiet period could have run out, not reset on every chunk.
    let idle: TimerHandle;
    const checkIdle = (): void => {
      const quietMs = timers.now() - lastByteAtMs;
      if (quietMs < limits.idleTimeoutMs) {
        idle = timers.setTimeout(checkIdle, limits.idleTimeoutMs - quietMs);
        idle.unref();
        return;
      }
      counters.inc('cutIdle');
      logger.info({ equipmentId: slot.equipmentId, idleTimeoutMs: limits.idleTimeoutMs }, 'relay session cut: idle too long');
      reset(c.socket);
      reset(d.socket);
    };
    idle = timers.setTimeout(checkIdle, limits.idleTimeoutMs);
    idle.unref();
    let closed = 0;
    const onClose =
      (s: Socket, other: Socket) =>
      (hadError: boolean): void => {
        live.delete(s);
        // Read once: resetting the other side can emit its 'close' (this handler) synchronously.
        const n = ++closed;
        if (n === 1) {
          // An orderly close lets the other side finish what it is sending; an abrupt one ends it.
          if (hadError || !s.readableEnded) reset(other);
          else other.end();
        }
        if (n === 2) {
          timers.clearTimeout(cut);
          timers.clearTimeout(idle);
          active--;
          release(slot);
          logger.info({ equipmentId: slot.equipmentId, bytes, durationMs: timers.now() - started }, 'relay session ended');
        }
      };
    c.socket.once('close', onClose(c.socket, d.socket));
    d.socket.once('close', onClose(d.socket, c.socket));
    logger.info({ equipmentId: slot.equipmentId }, 'relay session paired (end-to-end encrypted; the relay sees ciphertext only)');
  }

  return {
    counters,
    get active() {
      return active;
    },
    plainLegs: limits.plainLegs,
    offer(requestId, equipmentId, clientAddress, offeredOn) {
      const key = requestId.toString('hex');
      const source = sourceKey(clientAddress);
      if ((perDevice.get(equipmentId) ?? 0) >= limits.maxSessionsPerDevice) {
        counters.inc('refusedPerDevice');
        logger.info({ equipmentId, max: limits.maxSessionsPerDevice }, 'relay not offered: the device holds its share of relay sessions');
        return { ok: false, reason: 'per_device' };
      }
      if ((perSource.get(source) ?? 0) >= limits.maxSessionsPerSource) {
        counters.inc('refusedPerSource');
        logger.info(
          { equipmentId, source, max: limits.maxSessionsPerSource },
          'relay not offered: the client source holds its share of relay sessions',
        );
        return { ok: false, reason: 'per_source' };
      }
      if (slots.size >= RELAY_MAX_OFFERS || slots.has(key)) {
        counters.inc('refusedFull');
        return { ok: false, reason: 'full' };
      }
      counters.inc('offered');
      const timer = timers.setTimeout(() => {
        const slot = slots.get(key);
        slots.delete(key);
        counters.inc('expired');
        if (slot) release(slot);
        slot?.client?.socket.destroy();
        slot?.device?.socket.destroy();
      }, limits.joinTimeoutMs);
      timer.unref();
      const joinToken = randomBytes(RELAY_JOIN_TOKEN_BYTES);
      slots.set(key, { equipmentId, offeredOn, source, joinToken, released: false, timer });
      add(perDevice, equipmentId, 1);
      add(perSource, source, 1);
      return { ok: true, joinToken };
    },
    release(requestId, on) {
      const key = requestId.toString('hex');
      const slot = slots.get(key);
      if (!slot || slot.offeredOn === undefined || slot.offeredOn !== on || slot.client) {
        counters.inc('releaseIgnored');
        return false;
      }
      timers.clearTimeout(slot.timer);
      slots.delete(key);
      release(slot);
      counters.inc('released');
      slot.device?.socket.destroy();
      return true;
    },
    has: (requestId) => slots.has(requestId.toString('hex')),
    clientKey: (requestId) => slots.get(requestId.toString('hex'))?.joinToken,
    join(role: 'client' | 'device', requestId: Buffer, proof: Buffer | string | ((token: Buffer) => boolean), side: Side) {
      const key = requestId.toString('hex');
      const slot = slots.get(key);
      if (!slot || (role === 'device' && proof !== slot.equipmentId) || slot[role]) {
        counters.inc('refusedUnknown');
        side.socket.destroy();
        return;
      }
      if (
        role === 'client' &&
        !(typeof proof === 'function'
          ? proof(slot.joinToken)
          : Buffer.isBuffer(proof) && proof.length === slot.joinToken.length && timingSafeEqual(proof, slot.joinToken))
      ) {
        // Someone who saw the request ID (the NOTIFY) but was not given the token: not the client.
        counters.inc('refusedToken');
        side.socket.destroy();
        return;
      }
      if (side.socket.readableEnded) {
        side.socket.destroy();
        return;
      }
      slot[role] = side;
      side.socket.once('close', () => {
        if (slots.get(key) !== slot || slot[role] !== side) return;
        delete slot[role];
        if (role === 'client') {
          // The client joins once, at the offer; leaving unpaired, it has chosen another path:
          // free its share now rather than at the join deadline.
          timers.clearTimeout(slot.timer);
          slots.delete(key);
          release(slot);
          counters.inc('withdrawn');
          slot.device?.socket.destroy();
        }
      });
      // A side that half-closes before it is paired has given up (the other path won): close it
      // now; paired, it would not even pass its FIN on ('end' has been emitted already).
      side.socket.once('end', () => {
        if (slots.get(key) === slot && slot[role] === side) side.socket.destroy();
      });
      if (slot.client && slot.device) pair(key, slot);
      // The device came sooner than its plan said (every direct path failed): its client, waiting
      // for the planned time, joins now.
      else if (role === 'device' && slot.offeredOn && !slot.toldNow) {
        slot.toldNow = true;
        counters.inc('toldNow');
        sendNow(slot.offeredOn, { type: FrameType.RELAY_NOW, requestId });
      }
    },
    stop() {
      for (const slot of slots.values()) {
        timers.clearTimeout(slot.timer);
        release(slot);
      }
      slots.clear();
      for (const s of live) s.destroy();
    },
  };
}
