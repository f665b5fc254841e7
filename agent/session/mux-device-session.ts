/**
 * The device's end of a mux session (agent/protocol/mux-frames.ts; the HTTP/2 one, kept for older
 * clients, is device-session.ts). Each stream's open names a service: the device checks it against
 * its allow-list as it stands now (a reload applies to the next stream), connects the service and
 * glues the stream to that socket, or refuses the stream alone with a peerlink status. Bytes that
 * came with the open wait (within the stream's window) until then; a refused stream's are dropped.
 * At most `maxStreams` at once (more are refused DEVICE_BUSY). The session ends when the client
 * closes it, when the channel breaks or the framing is broken, after `idleMs` without a stream,
 * or at stop (the signal).
 */
import type { Socket } from 'node:net';
import { SERVICE_NAME_PATTERN, TUNNEL_CHOSEN_BYTE } from '../protocol/constants.js';
import { Status, type StatusValue } from '../protocol/status.js';
import { deviceSessionOptions, type DeviceSessionOptions, type DeviceSessionOutcome } from './device-session.js';
import { startMuxSession, type MuxStream } from './mux-session.js';
import { socketSink, startSocketReads, type GlueCounts } from './mux-socket.js';
import { createIdleClose } from './idle-close.js';
import { refusalCounter } from './session-counts.js';

/** Serve one mux session until it ends; resolves with what it carried. */
export async function serveMuxDeviceSession(input: DeviceSessionOptions): Promise<DeviceSessionOutcome> {
  const o = deviceSessionOptions(input);
  const log = o.logger;
  // Streams carry small request/answer exchanges: no Nagle delay on the channel.
  (o.channel as Partial<Socket>).setNoDelay?.(true);
  // Half-close is per stream (FIN): the channel's end means the client is gone.
  o.channel.allowHalfOpen = false;
  o.channel.write(Buffer.of(TUNNEL_CHOSEN_BYTE));
  let streams = 0;
  let refused = 0;
  const counts: GlueCounts = { toSocket: 0, fromSocket: 0 };
  const { idle, busy } = createIdleClose(o.idleMs, log, () => session.close());

  function refuse(st: MuxStream, status: StatusValue, why: string): void {
    refused++;
    o.count?.(refusalCounter(status));
    log.warn({ service: st.service, status }, `stream refused: ${why}`);
    session.refuse(st, status);
  }

  function onOpen(st: MuxStream): void {
    busy();
    if (!SERVICE_NAME_PATTERN.test(st.service)) return refuse(st, Status.BAD_REQUEST, 'not a service name');
    // Authorisation per stream: the allow-list as it is now.
    const target = o.services().get(st.service);
    if (!target) return refuse(st, Status.SERVICE_REFUSED, `service ${st.service} is not in the allow-list`);
    o.connectService(target, o.connectTimeoutMs)
      .then(
        (svc) => {
          if (st.done) {
            svc.destroy(); // the client reset it (or the session ended) meanwhile
            return;
          }
          svc.setNoDelay(true);
          streams++;
          const ref = { st };
          session.accept(st, socketSink(session, ref, svc, counts));
          startSocketReads(session, st, svc, counts);
        },
        (err: Error) => {
          if (!st.done) refuse(st, Status.SERVICE_UNAVAILABLE, err.message);
        },
      )
      // A fault in accepting ends that stream, never the process (an unhandled rejection would).
      .catch((err: unknown) => {
        log.warn({ service: st.service, err: (err as Error).message }, 'stream reset: accepting it failed');
        if (!st.done) session.reset(st);
      });
  }

  const session = startMuxSession({
    channel: o.channel,
    role: 'device',
    logger: log,
    onOpen,
    maxStreams: o.maxStreams,
    onIdle: idle,
    ...(o.count ? { count: o.count } : {}),
  });
  const onAbort = (): void => session.close('destroy');
  o.signal.addEventListener('abort', onAbort, { once: true });
  if (o.signal.aborted) onAbort();
  idle();
  try {
    await session.closed;
  } finally {
    busy();
    o.signal.removeEventListener('abort', onAbort);
    // A graceful close ended our side and waits for the peer's (mux-session.ts cuts it after a while).
    if (!o.channel.destroyed && !o.channel.writableEnded) o.channel.destroy();
  }
  const r = { streams, refused, bytesToClient: counts.fromSocket, bytesFromClient: counts.toSocket };
  log.info(r, 'S209 session ended');
  return r;
}
