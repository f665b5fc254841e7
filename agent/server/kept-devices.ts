/**
 * Kept device connections (issue 15): after its verdict a device may keep its attach connection
 * for a while (it says so with DEVICE_IDLE). The next request for it at this node is then sent as
 * a DEVICE_WAKE over that connection instead of a UDP notification (S205), and the device attaches
 * for it on the same connection: no notification, no new TLS handshake. The wake and the attach
 * are checked exactly as on the patent's path (P9 wake proof at the device, attach proof bound to
 * this TLS session at the server), so a kept connection lets nobody do anything new.
 *
 * One request at a time per connection: a connection taken for a wake leaves the table, and
 * comes back only after its next verdict and DEVICE_IDLE. A device may keep up to KEPT_PER_DEVICE,
 * so that requests in flight together each wake one (the newest kept first) instead of all but
 * one attaching with a new TLS connection. Bounded: KEPT_PER_DEVICE per device (past it the
 * device's oldest is closed), at most `maxKept` in all (past it a new one is closed), each closed
 * after its idle time (the device's, at most `maxIdleMs`, plus KEPT_IDLE_GRACE_MS); a closed one
 * leaves the table.
 */
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Counters } from '../common/counters.js';
import { ErrorCodes, isPeerlinkError } from '../common/errors.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import type { Wake } from '../protocol/wake.js';
import type { BrokerCounter } from './broker-counters.js';

/** Kept device connections at once, per node (requests.max_kept_devices): ~60 KB of server RSS each (scripts/bench/kept-memory.ts). */
export const MAX_KEPT_DEVICES = 2_000;
/**
 * Kept connections per device: requests to one device in flight together (a web page's, a
 * burst of `--listen` connections) each find one; ~60 KB each, counted in MAX_KEPT_DEVICES.
 */
export const KEPT_PER_DEVICE = 8;
/** The longest a kept connection stays idle at the server (requests.kept_idle_ms). */
export const KEPT_IDLE_MAX_MS = 60_000;
/**
 * The server waits this much past the device's own idle time: the device closes its kept
 * connection itself (it knows it will not answer a wake), the server's deadline is the backstop
 * for a device that did not. Equal deadlines raced, and the server cut connections the device was
 * about to close cleanly (seen under load in kept-device-connection.spec).
 */
export const KEPT_IDLE_GRACE_MS = 1_000;
/** DEVICE_IDLE comes right after the verdict (same write); an agent that keeps nothing closes instead. */
export const KEPT_OFFER_TIMEOUT_MS = 2_000;

type DeviceAttach = Extract<Frame, { type: typeof FrameType.DEVICE_ATTACH }>;

export interface KeptDevicesOptions {
  /** 0: keep none (every request is notified over UDP, as in the patent). */
  readonly maxKept: number;
  readonly maxIdleMs: number;
  /** How long the device has to attach after a wake over its kept connection. */
  readonly attachTimeoutMs: number;
  readonly counters: Counters<BrokerCounter>;
  readonly logger: Logger;
  readonly clock: { now(): number };
  /** The device's attach on its kept connection: checked and handed to its request as any attach (connection-broker.ts). */
  readonly onAttach: (channel: FrameChannel, socket: TLSSocket, attach: DeviceAttach) => Promise<void>;
  /** A device (generation) on the operator's deny list is not woken over a kept connection. */
  readonly denied?: (equipmentId: string, generation?: number) => boolean;
}

export interface KeptDevices {
  /**
   * After a device's verdict on `channel`: keep it if the device sends DEVICE_IDLE (and there is
   * room), else close it. Takes ownership of the channel.
   */
  offer(channel: FrameChannel, device: { readonly equipmentId: string; readonly generation?: number }): void;
  /**
   * Wake the device over its idle kept connection, if it has one here: null if not. Else the
   * connection leaves the table and the promise says whether the device attached on it (true) or
   * the connection failed first (false: notify over UDP at once).
   */
  wake(equipmentId: string, requestId: Buffer, wake: Wake): Promise<boolean> | null;
  /** Idle kept connections now (all devices). */
  readonly size: number;
  /** Close every kept connection and keep no more (the server is stopping). */
  close(): void;
}

interface Entry {
  readonly channel: FrameChannel;
  readonly generation: number | undefined;
  /** Ends the idle wait when the connection is taken for a wake. */
  readonly taken: AbortController;
}

export function createKeptDevices(o: KeptDevicesOptions): KeptDevices {
  /** Per device, oldest first. */
  const idle = new Map<string, Entry[]>();
  let total = 0;
  const watched = new WeakSet<FrameChannel>();
  let closed = false;

  function keep(channel: FrameChannel, equipmentId: string, generation: number | undefined, idleMs: number): void {
    if (closed || o.maxKept === 0) return channel.close();
    const list = idle.get(equipmentId) ?? [];
    // Past the device's share: the newer connection replaces its oldest.
    while (list.length >= KEPT_PER_DEVICE) evict(equipmentId, list[0]!);
    if (total >= o.maxKept) {
      o.counters.inc('keptOverCap');
      return channel.close();
    }
    const entry: Entry = { channel, generation, taken: new AbortController() };
    list.push(entry);
    idle.set(equipmentId, list);
    total++;
    o.counters.inc('kept');
    const ms = Math.min(idleMs, o.maxIdleMs) + KEPT_IDLE_GRACE_MS;
    // The idle deadline is this wait's: a frame while idle is out of turn, nothing by then is idle.
    channel.next(ms, entry.taken.signal).then(
      () => {
        if (entry.taken.signal.aborted) return;
        drop(equipmentId, entry);
        channel.close();
      },
      (err: unknown) => {
        if (entry.taken.signal.aborted) return;
        if (isPeerlinkError(err) && err.code === ErrorCodes.PEER_TIMEOUT) o.counters.inc('keptIdleClosed');
        drop(equipmentId, entry);
        channel.close();
      },
    );
    // Once per connection (it may be kept again after each request).
    if (!watched.has(channel)) {
      watched.add(channel);
      channel.socket.once('close', () => {
        const e = idle.get(equipmentId)?.find((x) => x.channel === channel);
        if (e) drop(equipmentId, e);
      });
    }
  }

  /** Out of the table, its idle wait ended, the connection closed. */
  function evict(equipmentId: string, entry: Entry): void {
    drop(equipmentId, entry);
    entry.taken.abort();
    entry.channel.close();
  }

  function drop(equipmentId: string, entry: Entry): void {
    const list = idle.get(equipmentId);
    const i = list ? list.indexOf(entry) : -1;
    if (i < 0) return;
    list!.splice(i, 1);
    total--;
    if (list!.length === 0) idle.delete(equipmentId);
  }

  return {
    offer(channel, device) {
      if (closed || o.maxKept === 0) return channel.close();
      channel.next(KEPT_OFFER_TIMEOUT_MS).then(
        (f) => {
          if (f.type === FrameType.DEVICE_IDLE && f.idleMs > 0) keep(channel, device.equipmentId, device.generation, f.idleMs);
          else channel.close();
        },
        () => channel.close(),
      );
    },
    wake(equipmentId, requestId, wake) {
      // The newest: the least likely to have been closed by the device's idle time or a NAT.
      const entry = idle.get(equipmentId)?.at(-1);
      if (!entry) return null;
      drop(equipmentId, entry);
      entry.taken.abort();
      const { channel } = entry;
      if (channel.socket.destroyed || o.denied?.(equipmentId, entry.generation ?? 0)) {
        channel.close();
        return null;
      }
      o.counters.inc('keptWakes');
      channel.send({ type: FrameType.DEVICE_WAKE, requestId, serverTimeMs: o.clock.now(), wake });
      return channel.next(o.attachTimeoutMs).then(
        async (f) => {
          if (f.type !== FrameType.DEVICE_ATTACH || f.equipmentId !== equipmentId) {
            channel.close();
            return false;
          }
          await o.onAttach(channel, channel.socket as TLSSocket, f);
          return !channel.socket.destroyed;
        },
        () => {
          channel.close();
          return false;
        },
      );
    },
    get size() {
      return total;
    },
    close() {
      closed = true;
      for (const [id, list] of [...idle]) for (const e of [...list]) evict(id, e);
    },
  };
}
