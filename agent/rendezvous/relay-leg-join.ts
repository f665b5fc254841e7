/**
 * Join the relay on a plain leg (issue 15; agent/server/relay-leg.ts says why and how): TCP to the
 * server's TLS port, both sides prove the key they share, and once paired the end-to-end TLS-PSK
 * channel runs on the socket itself, with no TLS around it.
 *
 * A server from before plain legs answers the first frame as a broken TLS handshake (an alert or a
 * close): that, or no challenge within RELAY_LEG_CHALLENGE_TIMEOUT_MS, resolves null and the caller
 * joins over TLS as before. A challenge whose proof is wrong is not the server (it does not hold the
 * key): also null, and the TLS join verifies the certificate (P5).
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { RELAY_LEG_NONCE_BYTES } from '../protocol/constants.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, RelayRole } from '../protocol/frames.js';
import { equalBytes, relayLegProof } from '../protocol/keys.js';

/** How long a plain leg waits for the server's challenge before joining over TLS instead. */
export const RELAY_LEG_CHALLENGE_TIMEOUT_MS = 3_000;

export interface RelayLegJoin {
  readonly host: string;
  readonly port: number;
  readonly requestId: Buffer;
  /** The client's join token, or the device's K_reg. */
  readonly key: Buffer;
  readonly role: 'client' | 'device';
  readonly equipmentId?: string;
  readonly generation?: number;
  /** For RELAY_PAIRED, after the join. */
  readonly pairTimeoutMs: number;
  readonly signal: AbortSignal;
}

/** The paired socket (paused, the peer's first bytes put back), or null: join over TLS instead. */
export async function joinRelayLeg(o: RelayLegJoin): Promise<Socket | null> {
  if (o.signal.aborted) throw abortError(o.signal);
  // noDelay: the join's frames and then the end-to-end handshake are small writes (no Nagle wait).
  const sock = connect({ host: o.host, port: o.port, allowHalfOpen: true, noDelay: true });
  sock.on('error', () => undefined); // reported through the channel
  const onAbort = (): void => void sock.destroy();
  o.signal.addEventListener('abort', onAbort, { once: true });
  const channel = new FrameChannel(sock);
  const nonce = randomBytes(RELAY_LEG_NONCE_BYTES);
  try {
    channel.send({
      type: FrameType.RELAY_LEG_HELLO,
      role: o.role === 'client' ? RelayRole.CLIENT : RelayRole.DEVICE,
      equipmentId: o.role === 'device' ? o.equipmentId! : '',
      ...(o.role === 'device' && o.generation ? { generation: o.generation } : {}),
      requestId: o.requestId,
      nonce,
    });
    let challenge;
    try {
      challenge = await channel.next(RELAY_LEG_CHALLENGE_TIMEOUT_MS, o.signal);
    } catch (err) {
      if (o.signal.aborted) throw err;
      sock.destroy();
      return null;
    }
    if (
      challenge.type !== FrameType.RELAY_LEG_CHALLENGE ||
      !equalBytes(relayLegProof(o.key, 'server', o.requestId, nonce, challenge.nonce), challenge.proof)
    ) {
      sock.destroy();
      return null;
    }
    channel.send({ type: FrameType.RELAY_LEG_JOIN, proof: relayLegProof(o.key, 'joiner', o.requestId, nonce, challenge.nonce) });
    const paired = await channel.next(o.pairTimeoutMs, o.signal);
    if (paired.type !== FrameType.RELAY_PAIRED) throw new PeerlinkError(ErrorCodes.PROTOCOL, 'relay answered out of turn');
    return sock;
  } catch (err) {
    sock.destroy();
    throw err;
  } finally {
    o.signal.removeEventListener('abort', onAbort);
  }
}
