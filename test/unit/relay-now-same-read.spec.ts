/**
 * RELAY_NOW that arrives in the same read as the answer (issue 15's review). The server corks its
 * answer (offer, plan, result, next HELLO) into one write, and a device that joins the relay at
 * once makes it send RELAY_NOW right behind (server/relay.ts sendNow): one TCP chunk. The channel
 * diverts RELAY_NOW synchronously while it decodes that chunk, before the client, resumed only
 * later by the result, has deferred its offer: the RELAY_NOW found nobody waiting and was lost,
 * and the client joined only at its planned time. Here the client's steps (client.ts request())
 * run over a real socket that gets the whole answer and RELAY_NOW in one write.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { isPeerlinkError, ErrorCodes } from '../../agent/common/errors.js';
import { createRelayPlans, RELAY_NOW_EARLY_MAX } from '../../agent/client/relay-plan.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { encodeFrame, FrameType, type Frame } from '../../agent/protocol/frames.js';
import { Status } from '../../agent/protocol/status.js';
import { LOOPBACK } from '../helpers/harness.js';

/** A plan far beyond this test: a join before it can only be RELAY_NOW's. */
const PLAN_MS = 60_000;

/** A client socket whose server writes `frames` in one write, once the client connects; the reads it saw. */
async function answeredInOneWrite(frames: readonly Frame[]): Promise<{ socket: Socket; reads: () => number; close: () => void }> {
  const server = createServer((s) => s.end(Buffer.concat(frames.map(encodeFrame))));
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  const { port } = server.address() as { port: number };
  const socket = connect(port, LOOPBACK);
  let reads = 0;
  socket.on('data', () => void reads++);
  await new Promise<void>((r) => socket.once('connect', r));
  return {
    socket,
    reads: () => reads,
    close: () => {
      socket.destroy();
      server.close();
    },
  };
}

/** Is the join due at once? Due: resolves; not due: aborted after the frames in hand were handled. */
async function dueAtOnce(due: (signal: AbortSignal) => Promise<void>): Promise<boolean> {
  const ac = new AbortController();
  const p = due(ac.signal).then(
    () => true,
    (err: unknown) => {
      if (isPeerlinkError(err, ErrorCodes.ABORTED)) return false;
      throw err;
    },
  );
  // Every frame already read was handled in earlier turns: what RELAY_NOW set off has run by now.
  setImmediate(() => ac.abort());
  return p;
}

/** Reads the answer frame by frame up to its result, as client.ts request() does. */
async function untilResult(channel: FrameChannel): Promise<void> {
  let f = await channel.next(5_000);
  while (f.type !== FrameType.CONNECT_RESULT) f = await channel.next(5_000);
}

for (const order of ['after the result', 'before the result'] as const) {
  test(`RELAY_NOW in the same read as the answer (${order}) makes the deferred join due at once, and the frame after it still comes`, async (t) => {
    const requestId = randomBytes(16);
    const now: Frame = { type: FrameType.RELAY_NOW, requestId };
    const answer: Frame[] = [
      { type: FrameType.RELAY_OFFER, requestId, joinToken: randomBytes(16) },
      { type: FrameType.RELAY_PLAN, requestId, relayInMs: PLAN_MS },
      ...(order === 'before the result' ? [now] : []),
      { type: FrameType.CONNECT_RESULT, status: Status.OK, detail: 'ok' },
      ...(order === 'after the result' ? [now] : []),
      { type: FrameType.HELLO, serverTimeMs: 1 },
    ];
    const { socket, reads, close } = await answeredInOneWrite(answer);
    t.teardown(close);
    const channel = new FrameChannel(socket);
    const plans = createRelayPlans();
    // As client.ts request(): watched before the request, the answer read frame by frame.
    plans.watch(channel);
    await untilResult(channel);
    t.is(reads(), 1, 'the answer and RELAY_NOW came in one read (else this spec tests nothing)');
    const deferred = plans.defer({ tls: socket as unknown as TLSSocket, channel }, requestId, PLAN_MS);
    t.true(await dueAtOnce(deferred.due), 'RELAY_NOW was lost: the client would wait for its plan');
    deferred.done();
    // The HELLO behind RELAY_NOW is there for the next request on this connection.
    t.is((await channel.next(5_000)).type, FrameType.HELLO);
  });
}

test('without RELAY_NOW the join waits for the plan (this spec can tell the two apart)', async (t) => {
  const requestId = randomBytes(16);
  const { socket, close } = await answeredInOneWrite([
    { type: FrameType.RELAY_OFFER, requestId, joinToken: randomBytes(16) },
    { type: FrameType.RELAY_PLAN, requestId, relayInMs: PLAN_MS },
    { type: FrameType.CONNECT_RESULT, status: Status.OK, detail: 'ok' },
    // RELAY_NOW for another request: not ours.
    { type: FrameType.RELAY_NOW, requestId: randomBytes(16) },
  ]);
  t.teardown(close);
  const channel = new FrameChannel(socket);
  const plans = createRelayPlans();
  plans.watch(channel);
  await untilResult(channel);
  const deferred = plans.defer({ tls: socket as unknown as TLSSocket, channel }, requestId, PLAN_MS);
  t.false(await dueAtOnce(deferred.due));
  deferred.done();
});

test('RELAY_NOWs nobody waits for are kept only the newest RELAY_NOW_EARLY_MAX: the oldest one past it is forgotten', async (t) => {
  const ids = Array.from({ length: RELAY_NOW_EARLY_MAX + 1 }, () => randomBytes(16));
  const { socket, close } = await answeredInOneWrite([
    ...ids.map((requestId): Frame => ({ type: FrameType.RELAY_NOW, requestId })),
    { type: FrameType.HELLO, serverTimeMs: 1 },
  ]);
  t.teardown(close);
  const channel = new FrameChannel(socket);
  const plans = createRelayPlans();
  plans.watch(channel);
  // Every RELAY_NOW was diverted before the HELLO behind them.
  t.is((await channel.next(5_000)).type, FrameType.HELLO);
  const conn = { tls: socket as unknown as TLSSocket, channel };
  const oldest = plans.defer(conn, ids[0]!, PLAN_MS);
  t.false(await dueAtOnce(oldest.due), 'the oldest was kept past the bound');
  oldest.done();
  for (const id of ids.slice(1)) {
    const kept = plans.defer(conn, id, PLAN_MS);
    t.true(await dueAtOnce(kept.due), 'one of the newest was not kept');
    kept.done();
  }
});
