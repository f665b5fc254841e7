/**
 * One socket that sends PROBE packets to the rendezvous server and waits for the tagged answer:
 * the address and port the server saw, the server's time, the round trip. Used by diagnose
 * (public address, NAT mapping behaviour, clock) and by the keepalive learning (mapping checks).
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { closeUdp } from '../common/listen.js';
import type { Endpoint } from '../protocol/address.js';
import { UDP_TYPE_COOKIE, UDP_TYPE_REGISTER_ACK } from '../protocol/constants.js';
import { equalBytes } from '../protocol/keys.js';
import {
  AckStatus,
  encodeProbe,
  parseUdpPacket,
  REGISTER_NONCE_BYTES,
  verifyTag,
  type Cookie,
  type RegisterAck,
} from '../protocol/udp-packets.js';

export interface ProbeReply {
  readonly observed: Endpoint;
  readonly serverTimeMs: number;
  readonly rttMs: number;
  /** serverTime - local time at the middle of the round trip. */
  readonly offsetMs: number;
  readonly clockSkew: boolean;
}

export interface ProbeOptions {
  readonly flags?: number;
  readonly timeoutMs?: number;
  readonly tries?: number;
  /** The first try's nonce (a mapping check echoes it). */
  readonly nonce?: Buffer;
  /** Called with each nonce a probe goes out with: a cookie answer makes the socket send again with a new one. */
  readonly onNonce?: (nonce: Buffer) => void;
}

export interface ProbeSocket {
  probe(target: Endpoint, o?: ProbeOptions): Promise<ProbeReply | null>;
  /** Send in server time learnt elsewhere (over TLS): a probe far outside the server's clock window is not answered. */
  setOffsetMs(offsetMs: number): void;
  localPort(): number;
  close(): Promise<void>;
}

/** A cookie answer is followed by a probe with the cookie at most this often within one try. */
const COOKIE_RESENDS_PER_TRY = 2;

export async function openProbeSocket(o: {
  equipmentId: string;
  generation?: number;
  registrationKey: Buffer;
  localPort?: number;
  family?: 4 | 6;
}): Promise<ProbeSocket> {
  const s: Socket = createSocket(o.family === 6 ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
  const waiting = new Map<string, (answer: RegisterAck | Cookie, from: Endpoint) => void>();
  s.on('message', (msg, rinfo) => {
    try {
      const parsed = parseUdpPacket(msg);
      const t = parsed.packet.type;
      if ((t !== UDP_TYPE_REGISTER_ACK && t !== UDP_TYPE_COOKIE) || !verifyTag(parsed, o.registrationKey)) return;
      const answer = parsed.packet as RegisterAck | Cookie;
      waiting.get(answer.nonce.toString('hex'))?.(answer, { address: rinfo.address, port: rinfo.port });
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
  /** The server's cookie per target port (return routability, P6): it binds our mapping towards it. */
  const cookies = new Map<string, Buffer>();
  /** Pending waits, ended at once by close(): stop() must not leave timers behind. */
  const pending = new Set<() => void>();
  const once = (
    target: Endpoint,
    flags: number,
    timeoutMs: number,
    firstNonce: Buffer,
    onNonce?: (n: Buffer) => void,
  ): Promise<ProbeReply | null> =>
    new Promise((resolve) => {
      if (closed) return resolve(null);
      const targetKey = `${target.address}:${target.port}`;
      let nonce = firstNonce;
      let key = '';
      let sentAt = 0;
      let resends = 0;
      const done = (): void => {
        clearTimeout(timer);
        pending.delete(giveUp);
        waiting.delete(key);
      };
      const giveUp = (): void => {
        done();
        resolve(null);
      };
      const timer = setTimeout(giveUp, timeoutMs);
      pending.add(giveUp);
      const onAnswer = (answer: RegisterAck | Cookie, from: Endpoint): void => {
        if (from.port !== target.port || !equalBytes(answer.nonce, nonce)) return;
        const rttMs = Date.now() - sentAt;
        const offset = Math.round(answer.serverTimeMs - (sentAt + rttMs / 2));
        if (answer.type === UDP_TYPE_COOKIE) {
          // The server asks us to show we receive: again, with its cookie and a new nonce.
          offsetMs = offset;
          cookies.set(targetKey, Buffer.from(answer.cookie));
          waiting.delete(key);
          if (resends++ >= COOKIE_RESENDS_PER_TRY) return giveUp();
          nonce = randomBytes(REGISTER_NONCE_BYTES);
          send();
          return;
        }
        done();
        resolve({
          observed: answer.observed,
          serverTimeMs: answer.serverTimeMs,
          rttMs,
          offsetMs: offset,
          clockSkew: answer.status === AckStatus.CLOCK_SKEW,
        });
      };
      const send = (): void => {
        key = nonce.toString('hex');
        sentAt = Date.now();
        waiting.set(key, onAnswer);
        onNonce?.(nonce);
        const cookie = cookies.get(targetKey);
        const packet = encodeProbe(
          {
            flags,
            equipmentId: o.equipmentId,
            ...(o.generation ? { generation: o.generation } : {}),
            timestampMs: Math.floor(Date.now() + offsetMs),
            nonce,
            ...(cookie ? { cookie } : {}),
          },
          o.registrationKey,
        );
        try {
          s.send(packet, target.port, target.address, () => undefined);
        } catch {
          giveUp(); // the socket was closed meanwhile
        }
      };
      send();
    });
  return {
    async probe(target, p = {}) {
      const tries = p.tries ?? 3;
      for (let i = 0; i < tries && !closed; i++) {
        const r = await once(
          target,
          p.flags ?? 0,
          p.timeoutMs ?? 1000,
          i === 0 && p.nonce ? p.nonce : randomBytes(REGISTER_NONCE_BYTES),
          p.onNonce,
        );
        if (r === null) continue;
        offsetMs = r.offsetMs;
        // A clock-skew answer still tells the address and the time; ask again in server time.
        if (r.clockSkew && i + 1 < tries) {
          const again = await once(target, p.flags ?? 0, p.timeoutMs ?? 1000, randomBytes(REGISTER_NONCE_BYTES), p.onNonce);
          return again ?? r;
        }
        return r;
      }
      return null;
    },
    setOffsetMs(ms) {
      offsetMs = ms;
    },
    localPort: () => s.address().port,
    close() {
      closed = true;
      for (const giveUp of [...pending]) giveUp();
      return closeUdp(s);
    },
  };
}
