/**
 * The server's time read over its CA-verified TLS port: the HELLO every connection starts with.
 * The registrar asks for it when its registrations go unanswered (a device whose clock fell behind
 * is not answered over UDP, P6). Loaded only then: TLS stays out of the agent's start-up path.
 */
import { TLS_HANDSHAKE_TIMEOUT_MS } from '../protocol/constants.js';

export interface ServerTimeSource {
  readonly host: string;
  readonly port: number;
  readonly serverName: string;
  readonly caPem: string;
}

export async function readServerTime(server: ServerTimeSource, signal: AbortSignal): Promise<number> {
  const [{ connectToServer }, { FrameChannel }, { FrameType }] = await Promise.all([
    import('./server-tls.js'),
    import('../protocol/frame-channel.js'),
    import('../protocol/frames.js'),
  ]);
  const tls = await connectToServer({ ...server, signal });
  const channel = new FrameChannel(tls);
  try {
    const hello = await channel.next(TLS_HANDSHAKE_TIMEOUT_MS, signal);
    if (hello.type !== FrameType.HELLO) throw new Error(`the server began with frame type ${hello.type}, not HELLO`);
    return hello.serverTimeMs;
  } finally {
    channel.close();
    tls.destroy();
  }
}
