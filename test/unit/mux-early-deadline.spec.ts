/**
 * Early streams of a mux client session (agent/session/mux-session.ts) that the device does not
 * answer end with PEER_TIMEOUT after openTimeoutMs, each counted from its own open (one timer per
 * session serves them all, oldest first); an answered stream is not cut, and the session stays
 * up. The "device" is a bare socket that reads the opens and answers only the one it is told to.
 */
import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';
import { silentLogger } from '../../agent/common/logger.js';
import { MuxFlag, MuxFrameReader, MuxType, muxHeader, readMuxOpenName } from '../../agent/protocol/mux-frames.js';
import { startMuxClientSession } from '../../agent/session/mux-client-session.js';

const OPEN_TIMEOUT_MS = 300;

async function device(t: {
  teardown(fn: () => void): void;
}): Promise<{ channel: Socket; opened: Map<string, number>; device: () => Socket }> {
  const opened = new Map<string, number>();
  let dev: Socket | null = null;
  const server = createServer((sock) => {
    dev = sock;
    const reader = new MuxFrameReader({
      data: (id, flags, payload) => {
        if (flags & MuxFlag.SYN) opened.set(readMuxOpenName(payload)!.service, id);
      },
      control: () => undefined,
    });
    sock.on('data', (d: Buffer) => reader.push(d));
    sock.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const channel = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(channel, 'connect');
  t.teardown(() => {
    channel.destroy();
    server.close();
  });
  return { channel, opened, device: () => dev! };
}

function ending(s: Duplex, t0: number): Promise<{ ms: number; err: Error | null }> {
  return new Promise((resolve) => {
    let err: Error | null = null;
    s.on('error', (e) => (err = e));
    s.once('close', () => resolve({ ms: performance.now() - t0, err }));
  });
}

test('unanswered early mux streams end with PEER_TIMEOUT, each after its own openTimeoutMs; an answered one and the session go on', async (t) => {
  const { channel, opened, device: dev } = await device(t);
  const session = startMuxClientSession({ channel, openTimeoutMs: OPEN_TIMEOUT_MS, logger: silentLogger() });
  t.teardown(() => void session.close('destroy'));
  const t0 = performance.now();
  const first = session.openEarly('one');
  const firstEnd = ending(first, t0);
  await new Promise((r) => setTimeout(r, OPEN_TIMEOUT_MS / 2));
  const t1 = performance.now();
  const second = session.openEarly('two');
  const secondEnd = ending(second, t1);
  const answered = session.openEarly('three');
  let answeredClosed = false;
  answered.once('close', () => (answeredClosed = true));
  while (!opened.has('three')) await new Promise((r) => setTimeout(r, 5));
  dev().write(muxHeader(MuxType.WINDOW_UPDATE, MuxFlag.ACK, opened.get('three')!, 0));

  const [a, b] = await Promise.all([firstEnd, secondEnd]);
  for (const e of [a, b]) t.true(isPeerlinkError(e.err, ErrorCodes.PEER_TIMEOUT), String(e.err));
  t.true(a.ms >= OPEN_TIMEOUT_MS - 5, `the first ended after ${a.ms} ms`);
  t.true(b.ms >= OPEN_TIMEOUT_MS - 5, `the second ended after ${b.ms} ms of its own, not with the first`);
  t.false(answeredClosed, 'the answered stream is not cut');
  t.true(session.alive());
  t.is(session.active(), 1);
});
