/**
 * The relay: the last resort when the device cannot dial the client (the prior art the patent
 * improves on, kept because real networks need it). The server pairs the client's and the
 * device's TLS connections for one offered request and copies bytes between them. What it
 * copies is the end-to-end TLS-PSK channel (P4): the relay sees only ciphertext.
 * Limits (concurrent sessions, bytes per second each way, duration) are enforced here.
 */
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Counters } from '../common/counters.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';

export const RELAY_MAX_SESSIONS = 100;
/** Per direction, per session: enough for a remote control UI, not for hosting a video farm. */
export const RELAY_BYTES_PER_SECOND = 2 * 1024 * 1024;
export const RELAY_MAX_DURATION_MS = 60 * 60_000;
export const RELAY_JOIN_TIMEOUT_MS = 20_000;

export const RELAY_COUNTERS = ['offered', 'paired', 'expired', 'refusedFull', 'refusedUnknown', 'bytes', 'cutForDuration'] as const;

export interface RelayLimits {
  readonly maxSessions: number;
  readonly bytesPerSecond: number;
  readonly maxDurationMs: number;
  /** How long an offer waits for both sides to join. */
  readonly joinTimeoutMs: number;
}

interface Side {
  readonly channel: FrameChannel;
  readonly socket: TLSSocket;
}

interface Slot {
  readonly equipmentId: string;
  client?: Side;
  device?: Side;
  readonly timer: NodeJS.Timeout;
}

export interface Relay {
  offer(requestId: Buffer, equipmentId: string): void;
  join(role: 'client' | 'device', requestId: Buffer, equipmentId: string | null, side: Side): void;
  /** An offer for this request is waiting here. */
  has(requestId: Buffer): boolean;
  readonly active: number;
  stop(): void;
  readonly counters: Counters<(typeof RELAY_COUNTERS)[number]>;
}

/**
 * Reset (RST) a relayed connection: a FIN would read as an orderly half-close and the far end
 * would wait on. Node's TLSSocket cannot reset itself; the TCP socket beneath it (_parent) can.
 */
function reset(s: TLSSocket): void {
  const raw = (s as TLSSocket & { _parent?: { resetAndDestroy?: () => void } })._parent;
  try {
    if (raw?.resetAndDestroy) raw.resetAndDestroy();
  } catch {
    /* fall through to destroy */
  }
  s.destroy();
}

/** Copy a -> b at most `bytesPerSecond`, honouring back-pressure; returns a stop function. */
function throttledCopy(a: TLSSocket, b: TLSSocket, bytesPerSecond: number, onBytes: (n: number) => void): void {
  let windowStart = Date.now();
  let inWindow = 0;
  let resumeTimer: NodeJS.Timeout | undefined;
  a.on('data', (d: Buffer) => {
    onBytes(d.length);
    const now = Date.now();
    if (now - windowStart >= 1000) {
      windowStart = now;
      inWindow = 0;
    }
    inWindow += d.length;
    const ok = b.write(d);
    if (inWindow >= bytesPerSecond) {
      a.pause();
      clearTimeout(resumeTimer);
      resumeTimer = setTimeout(() => {
        windowStart = Date.now();
        inWindow = 0;
        if (ok || b.writableLength === 0) a.resume();
        else b.once('drain', () => a.resume());
      }, 1000 - (now - windowStart));
    } else if (!ok) {
      a.pause();
      b.once('drain', () => a.resume());
    }
  });
  a.once('end', () => b.end());
  a.once('close', () => clearTimeout(resumeTimer));
}

export function createRelay(limits: RelayLimits, logger: Logger): Relay {
  const counters = new Counters(RELAY_COUNTERS);
  const slots = new Map<string, Slot>();
  const live = new Set<TLSSocket>();
  let active = 0;

  function pair(key: string, slot: Slot): void {
    clearTimeout(slot.timer);
    slots.delete(key);
    const c = slot.client!;
    const d = slot.device!;
    if (active >= limits.maxSessions) {
      counters.inc('refusedFull');
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
    const started = Date.now();
    let bytes = 0;
    const count = (n: number): void => {
      bytes += n;
      counters.inc('bytes', n);
    };
    throttledCopy(c.socket, d.socket, limits.bytesPerSecond, count);
    throttledCopy(d.socket, c.socket, limits.bytesPerSecond, count);
    c.socket.resume();
    d.socket.resume();
    const cut = setTimeout(() => {
      counters.inc('cutForDuration');
      logger.info({ equipmentId: slot.equipmentId, maxDurationMs: limits.maxDurationMs }, 'relay session cut at its duration limit');
      reset(c.socket);
      reset(d.socket);
    }, limits.maxDurationMs);
    let closed = 0;
    const onClose = (s: TLSSocket, other: TLSSocket) => (hadError: boolean): void => {
      live.delete(s);
      if (++closed === 1) {
        // An orderly close lets the other side finish what it is sending; an abrupt one ends it.
        if (hadError || !s.readableEnded) reset(other);
        else other.end();
      }
      if (closed === 2) {
        clearTimeout(cut);
        active--;
        logger.info({ equipmentId: slot.equipmentId, bytes, durationMs: Date.now() - started }, 'relay session ended');
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
    offer(requestId, equipmentId) {
      const key = requestId.toString('hex');
      counters.inc('offered');
      const timer = setTimeout(() => {
        const slot = slots.get(key);
        slots.delete(key);
        counters.inc('expired');
        slot?.client?.socket.destroy();
        slot?.device?.socket.destroy();
      }, limits.joinTimeoutMs);
      timer.unref();
      slots.set(key, { equipmentId, timer });
    },
    has: (requestId) => slots.has(requestId.toString('hex')),
    join(role, requestId, equipmentId, side) {
      const key = requestId.toString('hex');
      const slot = slots.get(key);
      if (!slot || (role === 'device' && equipmentId !== slot.equipmentId) || slot[role]) {
        counters.inc('refusedUnknown');
        side.socket.destroy();
        return;
      }
      if (side.socket.readableEnded) {
        side.socket.destroy();
        return;
      }
      slot[role] = side;
      side.socket.once('close', () => {
        if (slots.get(key) === slot && slot[role] === side) delete slot[role];
      });
      // A side that half-closes before it is paired has given up (the other path won): close it
      // now; paired, it would not even pass its FIN on ('end' has been emitted already).
      side.socket.once('end', () => {
        if (slots.get(key) === slot && slot[role] === side) side.socket.destroy();
      });
      if (slot.client && slot.device) pair(key, slot);
    },
    stop() {
      for (const slot of slots.values()) clearTimeout(slot.timer);
      slots.clear();
      for (const s of live) s.destroy();
    },
  };
}
