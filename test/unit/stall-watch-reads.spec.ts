/**
 * The stall watch (agent/common/tunnel-liveness.ts) reads /proc/net/tcp (tens of ms of CPU on a
 * host with thousands of sockets) only when the answer could be a stall: not while the peer sends,
 * not on an idle connection whose last read found nothing outstanding; and it still ends a socket
 * whose writes go unacknowledged.
 */
import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { keepTunnelAlive, STALL_RETRANSMITS, type SocketState } from '../../agent/common/tunnel-liveness.js';
import { ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';

const POLL_MS = 40;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function pair(t: { teardown(fn: () => void): void }): Promise<{ a: Socket; b: Socket }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const a = connect((server.address() as { port: number }).port, '127.0.0.1');
  const [b] = (await once(server, 'connection')) as [Socket];
  await once(a, 'connect');
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  t.teardown(() => {
    a.destroy();
    b.destroy();
    server.close();
  });
  return { a, b };
}

/** A table reader that counts its reads and answers what the test sets. */
function table(): { reads: () => number; answer: (s: SocketState) => void; readState: () => Promise<SocketState> } {
  let n = 0;
  let state: SocketState = { unanswered: 0, txQueueBytes: 0 };
  return { reads: () => n, answer: (s) => void (state = s), readState: () => (n++, Promise.resolve(state)) };
}

test('an idle connection whose last read found nothing outstanding is not read again until something is written', async (t) => {
  const { a } = await pair(t);
  const tab = table();
  keepTunnelAlive(a, { pollMs: POLL_MS, readState: tab.readState });
  await sleep(POLL_MS * 8);
  t.is(tab.reads(), 1, 'one read, which found the connection settled');
  a.write('x');
  await sleep(POLL_MS * 4);
  t.is(tab.reads(), 2, 'a write: one more read, settled again');
});

test('while the peer sends, the table is not read', async (t) => {
  const { a, b } = await pair(t);
  a.resume();
  const tab = table();
  tab.answer({ unanswered: 0, txQueueBytes: 100 }); // never settled: only the peer's bytes spare the reads
  keepTunnelAlive(a, { pollMs: POLL_MS, readState: tab.readState });
  const talk = setInterval(() => b.write('y'), POLL_MS / 4);
  t.teardown(() => clearInterval(talk));
  await sleep(POLL_MS * 8);
  t.true(tab.reads() <= 1, `reads while the peer sent: ${tab.reads()}`);
  clearInterval(talk);
  await sleep(POLL_MS * 4);
  t.true(tab.reads() >= 2, 'the peer went quiet with bytes outstanding: read again');
});

test('writes that go unacknowledged still end the socket with PEER_TIMEOUT', async (t) => {
  const { a } = await pair(t);
  const tab = table();
  keepTunnelAlive(a, { pollMs: POLL_MS, readState: tab.readState });
  await sleep(POLL_MS * 3); // settled
  tab.answer({ unanswered: STALL_RETRANSMITS, txQueueBytes: 1000 });
  a.write('z');
  const [err] = (await once(a, 'error')) as [Error];
  t.true(isPeerlinkError(err, ErrorCodes.PEER_TIMEOUT), String(err));
  t.true(a.destroyed);
});
