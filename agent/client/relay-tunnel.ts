/**
 * The client's side of the relay: join the server's relay for an offered request, wait to be
 * paired with the device, then run the end-to-end TLS-PSK channel over it as the TLS server
 * (as on the direct path). The relay only ever carries this channel's ciphertext (P4).
 *
 * First on a plain leg (rendezvous/relay-leg-join.ts, issue 15): the channel then runs on the TCP
 * socket itself. A server without plain legs gets the TLS join as before.
 */
import { keepTunnelAlive } from '../common/tunnel-liveness.js';
import type { TLSSocket } from 'node:tls';
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { connectToServer, type ServerTlsOptions } from '../rendezvous/server-tls.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';
import type { Expected } from './peer-listener.js';
import { acceptTunnel } from './tunnel-server.js';
import { carrierStream } from '../common/carrier.js';
import { joinRelayLeg } from '../rendezvous/relay-leg-join.js';

export async function relayTunnel(
  server: Omit<ServerTlsOptions, 'signal'>,
  requestId: Buffer,
  /** From the server's RELAY_OFFER: without it the relay refuses the join. */
  joinToken: Buffer,
  expected: Pick<Expected, 'clientNonce' | 'accessKey' | 'equipmentId' | 'service'>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<TLSSocket> {
  const leg = await joinRelayLeg({
    host: server.host,
    port: server.port,
    requestId,
    key: joinToken,
    role: 'client',
    pairTimeoutMs: timeoutMs,
    signal,
  });
  if (leg) {
    // acceptTunnel watches the leg once the channel is up (a second watch would read /proc/net/tcp twice).
    try {
      return await acceptTunnel(leg, expected, timeoutMs, signal, 'through the relay');
    } catch (err) {
      leg.destroy();
      throw err;
    }
  }
  const outer = await connectToServer({ ...server, signal });
  const onAbort = (): void => void outer.destroy();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const channel = new FrameChannel(outer);
    await channel.next(timeoutMs, signal); // HELLO
    channel.send({ type: FrameType.RELAY_JOIN_CLIENT, requestId, joinToken });
    const paired = await channel.next(timeoutMs, signal);
    if (paired.type !== FrameType.RELAY_PAIRED) throw new PeerlinkError(ErrorCodes.PROTOCOL, 'relay answered out of turn');
    signal.removeEventListener('abort', onAbort);
    keepTunnelAlive(outer);
    return await acceptTunnel(carrierStream(outer), expected, timeoutMs, signal, 'through the relay');
  } catch (err) {
    outer.destroy();
    throw err;
  }
}
