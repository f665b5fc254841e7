/**
 * Connection requests waiting for their device's TLS connection (between packet 205 and S206).
 * Keyed by the random request ID the notification carried.
 */
import type { FrameChannel } from '../protocol/frame-channel.js';
import type { RefuseReasonValue } from '../protocol/udp-packets.js';

export interface PendingRequest {
  readonly requestId: Buffer;
  readonly equipmentId: string;
  /** Who asked (the source key of rate-limiter.ts `sourceKey`): each source holds few of a device's slots (P9). */
  readonly source: string;
  /** Hands the device's verified channel to the waiting client conversation. */
  readonly attach: (device: FrameChannel) => void;
  /** The device said the request's wake proof failed (UDP REFUSE, P9): end it now. */
  readonly refused: (reason: RefuseReasonValue) => void;
}

export class PendingRequests {
  private readonly byId = new Map<string, PendingRequest>();
  private readonly perDevice = new Map<string, number>();
  private readonly perDeviceSource = new Map<string, number>();

  add(p: PendingRequest): void {
    this.byId.set(p.requestId.toString('hex'), p);
    this.perDevice.set(p.equipmentId, (this.perDevice.get(p.equipmentId) ?? 0) + 1);
    const k = `${p.equipmentId}\0${p.source}`;
    this.perDeviceSource.set(k, (this.perDeviceSource.get(k) ?? 0) + 1);
  }

  /** Remove and return the request (each may be attached once). */
  take(requestId: Buffer): PendingRequest | undefined {
    const key = requestId.toString('hex');
    const p = this.byId.get(key);
    if (p) this.remove(p);
    return p;
  }

  peek(requestId: Buffer): PendingRequest | undefined {
    return this.byId.get(requestId.toString('hex'));
  }

  remove(p: PendingRequest): void {
    if (!this.byId.delete(p.requestId.toString('hex'))) return;
    decrement(this.perDevice, p.equipmentId);
    decrement(this.perDeviceSource, `${p.equipmentId}\0${p.source}`);
  }

  countFor(equipmentId: string): number {
    return this.perDevice.get(equipmentId) ?? 0;
  }

  /** Requests of one source waiting for one device. */
  countForSource(equipmentId: string, source: string): number {
    return this.perDeviceSource.get(`${equipmentId}\0${source}`) ?? 0;
  }

  get size(): number {
    return this.byId.size;
  }
}

function decrement(m: Map<string, number>, k: string): void {
  const n = (m.get(k) ?? 1) - 1;
  if (n <= 0) m.delete(k);
  else m.set(k, n);
}
