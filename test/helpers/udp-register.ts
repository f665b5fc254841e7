/**
 * A device's registration as the registrar makes it, from a test socket: a new source is first
 * asked for a cookie (return routability, P6), then registers with it.
 */
import { randomBytes } from 'node:crypto';
import { UDP_TYPE_COOKIE, UDP_TYPE_REGISTER_ACK } from '../../agent/protocol/constants.js';
import {
  encodeProbe,
  encodeRegister,
  parseUdpPacket,
  REGISTER_NONCE_BYTES,
  type Cookie,
  type RegisterAck,
} from '../../agent/protocol/udp-packets.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
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
export async function registerThroughCookie(
  from: RecordingUdp,
  to: { port: number },
  id: string,
  key: Buffer,
  timestampMs = Date.now(),
): Promise<Registered> {
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

/**
 * A fence for "the server sent nothing" assertions, instead of a quiet period on the real clock:
 * the server handles one socket's datagrams in order and answers each as it handles it, so once
 * the answer to a fresh registration sent now has arrived, any answer to what `from` sent before
 * has arrived too. The fence's own answer (a cookie request for a new ID, which makes no registry
 * entry) is taken out of `from.received`. The probe port takes a probe as the fence. For a source
 * the server is rate-limiting, send the fence `via` a socket on another loopback address: its
 * answer then leaves after any answer to `from`, and one more turn of the event loop reads those.
 */
export async function udpFence(
  from: RecordingUdp,
  to: { port: number },
  masterKey: Buffer,
  as: 'registration' | 'probe' = 'registration',
  via: RecordingUdp = from,
): Promise<void> {
  const id = `FENCE-${randomBytes(4).toString('hex')}`;
  const nonce = randomBytes(REGISTER_NONCE_BYTES);
  const fields = { equipmentId: id, timestampMs: Date.now(), nonce };
  const key = deriveRegistrationKey(masterKey, id);
  await via.send(as === 'probe' ? encodeProbe({ flags: 0, ...fields }, key) : encodeRegister(fields, key), to);
  await answerTo(via, nonce, 10_000);
  if (via !== from) return new Promise((r) => setImmediate(r));
  const at = from.received.findIndex(({ msg }) => {
    try {
      const p = parseUdpPacket(msg).packet;
      return p.type === UDP_TYPE_COOKIE && p.nonce.equals(nonce);
    } catch {
      return false;
    }
  });
  from.received.splice(at, 1);
}
