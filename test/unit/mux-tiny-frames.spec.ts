/**
 * A peer that sends many tiny DATA frames to a stream whose socket reader stalled: the window
 * counts bytes, not frames, so before this each 1-byte frame became its own socket write, an
 * object queued per frame (~28 MB per 256 KiB window, the review of issue 15). Now a turn's
 * payloads leave in one write, one write in flight at a time, and every byte still arrives.
 */
import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { socketSink } from '../../agent/session/mux-socket.js';
import type { MuxSession, MuxStream } from '../../agent/session/mux-session.js';

test('100,000 one-byte frames to a stalled socket: a handful of socket writes, all bytes delivered and credited', async (t) => {
  let accepted!: Socket;
  const server = createServer((s) => {
    accepted = s;
    s.pause(); // the service does not read
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sock = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(sock, 'connect');
  t.teardown(() => {
    sock.destroy();
    accepted?.destroy();
    server.close();
  });
  let writes = 0;
  const write = sock.write.bind(sock) as (...a: unknown[]) => boolean;
  (sock as unknown as { write: (...a: unknown[]) => boolean }).write = (...a: unknown[]) => (writes++, write(...a));
  let credited = 0;
  const session = { consumed: (_st: MuxStream, n: number) => void (credited += n) } as unknown as MuxSession;
  const sink = socketSink(session, { st: {} as MuxStream }, sock, null);
  const FRAMES = 100_000;
  const one = Buffer.from('x');
  for (let i = 0; i < FRAMES; i++) sink.data(one);
  await new Promise((r) => setTimeout(r, 200));
  t.true(writes <= 4, `${writes} socket writes for ${FRAMES} frames`);
  let got = 0;
  accepted.on('data', (d: Buffer) => (got += d.length));
  accepted.resume();
  while (got < FRAMES || credited < FRAMES) await new Promise((r) => setTimeout(r, 20));
  t.is(got, FRAMES);
  t.is(credited, FRAMES);
});
