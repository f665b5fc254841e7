/**
 * Why the client caps its streams (issue 15's review: "past ~160 busy streams it ends its own
 * session"). A session ends when more than the windows' worth (128 x 256 KiB, plus 8 MiB: 160
 * windows) waits unread in its channel (mux-session.ts: the peer does not read). A client that
 * opened 200 streams, each writing its window at once, to a device that has not read them yet,
 * queued 200 windows and ended its own session at its next write. Holding the streams past the
 * cap (mux-held.ts), it queues at most 128 windows, and the session stays up.
 */
import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { silentLogger } from '../../agent/common/logger.js';
import { MUX_STREAM_WINDOW_BYTES } from '../../agent/protocol/mux-frames.js';
import { startMuxClientSession } from '../../agent/session/mux-client-session.js';

const STREAMS = 200;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test(`${STREAMS} streams writing a window each to a device that does not read yet: the client's session stays up`, async (t) => {
  // The device's end: accepts the channel and reads nothing (a slow link, a busy device).
  const held: Socket[] = [];
  const server = createServer((s) => {
    s.pause();
    held.push(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const channel = connect((server.address() as { port: number }).port, '127.0.0.1');
  t.teardown(() => {
    channel.destroy();
    for (const s of held) s.destroy();
    server.close();
  });
  await once(channel, 'connect');
  const session = startMuxClientSession({ channel, openTimeoutMs: 60_000, logger: silentLogger() });
  t.teardown(() => session.close('destroy'));
  const streams = Array.from({ length: STREAMS }, () => {
    const d = session.openEarly('echo');
    d.on('error', () => undefined);
    d.write(Buffer.alloc(MUX_STREAM_WINDOW_BYTES));
    return d;
  });
  await turn();
  await turn();
  // The next write of the session (a reset here) checks what waits unread in the channel.
  streams[0]!.destroy();
  await turn();
  await turn();
  t.true(session.alive(), 'the client ended its own session: it queued more than the windows allow');
});
