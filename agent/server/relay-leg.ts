/**
 * A plain relay leg (issue 15): a relay join on a TCP connection to the TLS port without TLS. The
 * outer TLS added nothing to what it carries (the end-to-end TLS-PSK channel, P4) and cost every
 * relayed byte an encryption and a decryption on each leg, at both ends and at the server.
 *
 * The join is authenticated both ways without TLS (frames.ts RELAY_LEG_*): the joiner names its
 * role, the request and a nonce; the server answers with its nonce and a proof that it holds the
 * key (the offer's join token for a client, K_reg for a device), so a joiner never pairs through
 * someone posing as the server; the joiner proves the same key over both nonces, so a proof seen on
 * the wire is useless on another connection. Then the relay (relay.ts) pairs it as a TLS join.
 *
 * The first byte tells a leg from TLS: a frame starts with the protocol version (1), a TLS
 * handshake with 0x16 (first-byte-switch in connection-broker.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Counters } from '../common/counters.js';
import { RELAY_LEG_NONCE_BYTES } from '../protocol/constants.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, RelayRole } from '../protocol/frames.js';
import { identityName } from '../protocol/identity-name.js';
import { deriveRegistrationKey, equalBytes, relayLegProof } from '../protocol/keys.js';
import type { Relay } from './relay.js';
import type { RelayBridge } from './relay-bridge.js';

export interface RelayLegContext {
  readonly relay: Relay;
  readonly relayBridge?: RelayBridge;
  readonly masterKey: Buffer;
  readonly denied?: (equipmentId: string, generation: number) => boolean;
  /** For the whole join: HELLO, then the joiner's proof. */
  readonly joinTimeoutMs: number;
  readonly counters: Counters<'relayLegs' | 'relayLegsRefused' | 'relayClientJoins'>;
  /** Called once the joiner said what it is (the connection tracker's "relay"). */
  readonly identified: () => void;
  readonly logger: Logger;
}

export async function serveRelayLeg(socket: Socket, ctx: RelayLegContext): Promise<void> {
  const channel = new FrameChannel(socket);
  const refuse = (): void => {
    ctx.counters.inc('relayLegsRefused');
    socket.destroy();
  };
  try {
    const hello = await channel.next(ctx.joinTimeoutMs);
    if (hello.type !== FrameType.RELAY_LEG_HELLO) return refuse();
    let key: Buffer | undefined;
    if (hello.role === RelayRole.CLIENT) {
      ctx.counters.inc('relayClientJoins');
      key = ctx.relay.clientKey(hello.requestId);
    } else if (!ctx.denied?.(hello.equipmentId, hello.generation ?? 0))
      key = deriveRegistrationKey(ctx.masterKey, identityName(hello.equipmentId, hello.generation));
    // An offer this node does not hold: a client joins where it got its offer; a device may bridge.
    if (!key) return refuse();
    ctx.identified();
    const nonce = randomBytes(RELAY_LEG_NONCE_BYTES);
    channel.send({
      type: FrameType.RELAY_LEG_CHALLENGE,
      nonce,
      proof: relayLegProof(key, 'server', hello.requestId, hello.nonce, nonce),
    });
    const join = await channel.next(ctx.joinTimeoutMs);
    if (join.type !== FrameType.RELAY_LEG_JOIN) return refuse();
    const proofOk = (k: Buffer): boolean => {
      const ok = equalBytes(relayLegProof(k, 'joiner', hello.requestId, hello.nonce, nonce), join.proof);
      ctx.counters.inc(ok ? 'relayLegs' : 'relayLegsRefused');
      return ok;
    };
    if (hello.role === RelayRole.CLIENT) {
      // Checked against the offer's token at the join (it may have expired meanwhile): refusedToken.
      ctx.relay.join('client', hello.requestId, proofOk, { channel, socket });
      return;
    }
    if (!proofOk(key)) return void socket.destroy();
    if (!ctx.relay.has(hello.requestId) && ctx.relayBridge) {
      socket.pause();
      if (await ctx.relayBridge.bridge({ channel, socket }, hello.equipmentId, hello.requestId, hello.generation)) return;
    }
    ctx.relay.join('device', hello.requestId, hello.equipmentId, { channel, socket });
  } catch (err) {
    ctx.logger.debug({ err: (err as Error).message }, 'plain relay leg ended before it joined');
    refuse();
  }
}
