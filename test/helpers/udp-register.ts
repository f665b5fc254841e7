/**
 * A device's registration as the registrar makes it, from a test socket: a new source is first
 * asked for a cookie (return routability, P6), then registers with it.
 */
import { randomBytes } from 'node:crypto';
import { UDP_TYPE_COOKIE, UDP_TYPE_REGISTER_ACK } from '../../agent/protocol/constants.js';
import { encodeRegister, parseUdpPacket, REGISTER_NONCE_BYTES, type Cookie, type RegisterAck } from '../../agent/protocol/udp-packets.js';
import type { RecordingUdp } from './harness.js';
import { waitUntil } from './harness.js';

export interface Registered {
  /** The registration the server accepted (with the cookie when one was asked for). */
  readonly packet: Buffer;
  readonly ack: RegisterAck;
  /** The cookie the server asked for, if it did. */
  readonly cookie: Buffer | undefined;
}

/** The answer (ack or cookie) to the datagram sent with `nonce`, once it has arrived. */
export async function answerTo(from: RecordingUdp, nonce: Buffer, timeoutMs = 3000): Promise<RegisterAck | Cookie> {
  let found: RegisterAck | Cookie | undefined;
  await waitUntil(
    () => {
      for (const { msg } of from.received) {
        try {
          const p = parseUdpPacket(msg).packet;
          if ((p.type === UDP_TYPE_REGISTER_ACK || p.type === UDP_TYPE_COOKIE) && p.nonce.equals(nonce)) found = p;
        } catch {
          /* not an answer */
        }
      }
      return found !== undefined;
    },
    'the server to answer the registration',
    timeoutMs,
  );
  return found!;
}

/** Register `id` from `from`, answering a cookie request once, and return what was accepted. */
export async function registerThroughCookie(from: RecordingUdp, to: { port: number }, id: string, key: Buffer, timestampMs = Date.now()): Promise<Registered> {
  let cookie: Buffer | undefined;
  for (let round = 0; round < 2; round++) {
    const nonce = randomBytes(REGISTER_NONCE_BYTES);
    const packet = encodeRegister({ equipmentId: id, timestampMs, nonce, ...(cookie ? { cookie } : {}) }, key);
    await from.send(packet, to);
    const answer = await answerTo(from, nonce);
    if (answer.type === UDP_TYPE_REGISTER_ACK) return { packet, ack: answer, cookie };
    cookie = Buffer.from(answer.cookie);
  }
  throw new Error(`the server asked for a cookie twice for ${id}`);
}
