/**
 * Connection requests waiting for their device's TLS connection (between packet 205 and S206).
 * Keyed by the random request ID the notification carried.
 */
import type { FrameChannel } from '../protocol/frame-channel.js';

export interface PendingRequest {
  readonly requestId: Buffer;
  readonly equipmentId: string;
  /** Hands the device's verified channel to the waiting client conversation. */
  readonly attach: (device: FrameChannel) => void;
}

export class PendingRequests {
  private readonly byId = new Map<string, PendingRequest>();
  private readonly perDevice = new Map<string, number>();

  add(p: PendingRequest): void {
    this.byId.set(p.requestId.toString('hex'), p);
    this.perDevice.set(p.equipmentId, (this.perDevice.get(p.equipmentId) ?? 0) + 1);
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
    const n = (this.perDevice.get(p.equipmentId) ?? 1) - 1;
    if (n <= 0) this.perDevice.delete(p.equipmentId);
    else this.perDevice.set(p.equipmentId, n);
  }

  countFor(equipmentId: string): number {
    return this.perDevice.get(equipmentId) ?? 0;
  }

  get size(): number {
    return this.byId.size;
  }
}
