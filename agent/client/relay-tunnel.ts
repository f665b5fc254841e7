/**
 * The client's side of the relay: join the server's relay for an offered request, wait to be
 * paired with the device, then run the end-to-end TLS-PSK channel over it as the TLS server
 * (as on the direct path). The relay only ever carries this channel's ciphertext (P4).
 */
import { TLSSocket } from 'node:tls';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { connectToServer, type ServerTlsOptions } from '../device/server-channel.js';
import { TUNNEL_CIPHER } from '../protocol/constants.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';
import { pskFor, type Expected } from './peer-listener.js';
import { carrierStream } from '../common/carrier.js';

export async function relayTunnel(
  server: Omit<ServerTlsOptions, 'signal'>,
  requestId: Buffer,
  expected: Pick<Expected, 'clientNonce' | 'accessKey' | 'equipmentId' | 'service'>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<TLSSocket> {
  const outer = await connectToServer({ ...server, signal });
  const onAbort = (): void => void outer.destroy();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const channel = new FrameChannel(outer);
    await channel.next(timeoutMs, signal); // HELLO
    channel.send({ type: FrameType.RELAY_JOIN_CLIENT, requestId });
    const paired = await channel.next(timeoutMs, signal);
    if (paired.type !== FrameType.RELAY_PAIRED) throw new PeerlinkError(ErrorCodes.PROTOCOL, 'relay answered out of turn');
    const inner = new TLSSocket(carrierStream(outer), {
      isServer: true,
      ciphers: TUNNEL_CIPHER,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      pskCallback: (_socket: TLSSocket, identity: string) => pskFor(expected, identity),
    } as ConstructorParameters<typeof TLSSocket>[1]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new PeerlinkError(ErrorCodes.PEER_TIMEOUT, 'no end-to-end handshake through the relay')), timeoutMs);
      inner.once('secure', () => {
        clearTimeout(timer);
        resolve();
      });
      inner.once('error', (err) => {
        clearTimeout(timer);
        reject(new PeerlinkError(ErrorCodes.AUTH_FAILED, `end-to-end handshake through the relay failed: ${err.message}`, { cause: err }));
      });
      signal.addEventListener('abort', () => reject(abortError(signal)), { once: true });
    });
    signal.removeEventListener('abort', onAbort);
    return inner;
  } catch (err) {
    outer.destroy();
    throw err;
  }
}
