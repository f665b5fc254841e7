/**
 * One socket that sends PROBE packets to the rendezvous server and waits for the tagged answer:
 * the address and port the server saw, the server's time, the round trip. Used by diagnose
 * (public address, NAT mapping behaviour, clock) and by the keepalive learning (mapping checks).
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { closeUdp } from '../common/listen.js';
import type { Endpoint } from '../protocol/address.js';
import { UDP_TYPE_REGISTER_ACK } from '../protocol/constants.js';
import { equalBytes } from '../protocol/keys.js';
import { AckStatus, encodeProbe, parseUdpPacket, REGISTER_NONCE_BYTES, verifyTag, type RegisterAck } from '../protocol/udp-packets.js';

export interface ProbeReply {
  readonly observed: Endpoint;
  readonly serverTimeMs: number;
  readonly rttMs: number;
  /** serverTime - local time at the middle of the round trip. */
  readonly offsetMs: number;
  readonly clockSkew: boolean;
}

export interface ProbeSocket {
  probe(target: Endpoint, o?: { flags?: number; timeoutMs?: number; tries?: number; nonce?: Buffer }): Promise<ProbeReply | null>;
  localPort(): number;
  close(): Promise<void>;
}

export async function openProbeSocket(o: { equipmentId: string; registrationKey: Buffer; localPort?: number }): Promise<ProbeSocket> {
  const s: Socket = createSocket({ type: 'udp4' });
  const waiting = new Map<string, (ack: RegisterAck, from: Endpoint) => void>();
  s.on('message', (msg, rinfo) => {
    try {
      const parsed = parseUdpPacket(msg);
      if (parsed.packet.type !== UDP_TYPE_REGISTER_ACK || !verifyTag(parsed, o.registrationKey)) return;
      waiting.get(parsed.packet.nonce.toString('hex'))?.(parsed.packet, { address: rinfo.address, port: rinfo.port });
    } catch {
      /* not for us: dropped */
    }
  });
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(o.localPort ?? 0, () => resolve());
  });
  let offsetMs = 0;
  let closed = false;
  /** Pending waits, ended at once by close(): stop() must not leave timers behind. */
  const pending = new Set<() => void>();
  const once = (target: Endpoint, flags: number, timeoutMs: number, nonce: Buffer): Promise<ProbeReply | null> =>
    new Promise((resolve) => {
      if (closed) return resolve(null);
      const key = nonce.toString('hex');
      const sentAt = Date.now();
      const giveUp = (): void => {
        clearTimeout(timer);
        pending.delete(giveUp);
        waiting.delete(key);
        resolve(null);
      };
      const timer = setTimeout(giveUp, timeoutMs);
      pending.add(giveUp);
      waiting.set(key, (ack, from) => {
        if (from.port !== target.port || !equalBytes(ack.nonce, nonce)) return;
        clearTimeout(timer);
        pending.delete(giveUp);
        waiting.delete(key);
        const rttMs = Date.now() - sentAt;
        resolve({ observed: ack.observed, serverTimeMs: ack.serverTimeMs, rttMs, offsetMs: Math.round(ack.serverTimeMs - (sentAt + rttMs / 2)), clockSkew: ack.status === AckStatus.CLOCK_SKEW });
      });
      const packet = encodeProbe({ flags, equipmentId: o.equipmentId, timestampMs: Math.floor(Date.now() + offsetMs), nonce }, o.registrationKey);
      try {
        s.send(packet, target.port, target.address, () => undefined);
      } catch {
        giveUp(); // the socket was closed meanwhile
      }
    });
  return {
    async probe(target, p = {}) {
      const tries = p.tries ?? 3;
      for (let i = 0; i < tries && !closed; i++) {
        const r = await once(target, p.flags ?? 0, p.timeoutMs ?? 1000, i === 0 && p.nonce ? p.nonce : randomBytes(REGISTER_NONCE_BYTES));
        if (r === null) continue;
        offsetMs = r.offsetMs;
        // A clock-skew answer still tells the address and the time; ask again in server time.
        if (r.clockSkew && i + 1 < tries) {
          const again = await once(target, p.flags ?? 0, p.timeoutMs ?? 1000, randomBytes(REGISTER_NONCE_BYTES));
          return again ?? r;
        }
        return r;
      }
      return null;
    },
    localPort: () => s.address().port,
    close() {
      closed = true;
      for (const giveUp of [...pending]) giveUp();
      return closeUdp(s);
    },
  };
}
