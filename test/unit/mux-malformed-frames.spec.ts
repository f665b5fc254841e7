/**
 * A peer that breaks the mux framing (agent/protocol/mux-frames.ts) gets GO_AWAY PROTOCOL_ERROR
 * and its session is closed, logged with PEERLINK_ERR_PROTOCOL and counted; streams of that session are cut;
 * the process goes on (this test process runs the device's end). Each case writes raw frames.
 */
import test from 'ava';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { ErrorCodes } from '../../agent/common/errors.js';
import {
  MUX_HEADER_BYTES,
  MUX_MAX_FRAME_BYTES,
  MUX_STREAM_WINDOW_BYTES,
  MuxFlag,
  MuxGoAway,
  MuxType,
  muxHeader,
  muxOpenName,
} from '../../agent/protocol/mux-frames.js';
import { echoService } from '../helpers/flow.js';
import { muxPair } from '../helpers/mux-pair.js';

const open = (id: number, service: string): Buffer => {
  const name = muxOpenName(service);
  return Buffer.concat([muxHeader(MuxType.DATA, MuxFlag.SYN, id, name.length), name]);
};

const CASES: Record<string, Buffer> = {
  'a DATA frame longer than the most a frame may carry': muxHeader(MuxType.DATA, 0, 1, 4 * MUX_MAX_FRAME_BYTES),
  'an unknown version': Buffer.concat([Buffer.of(9), muxHeader(MuxType.DATA, 0, 1, 0).subarray(1)]),
  'an unknown frame type': muxHeader(7, 0, 0, 0),
  'DATA on a stream never opened': muxHeader(MuxType.DATA, 0, 201, 0),
  'a stream id not above the last one': Buffer.concat([open(3, 'echo'), open(1, 'echo')]),
  'an open without a name': muxHeader(MuxType.DATA, MuxFlag.SYN, 1, 0),
  'more bytes than the window': Buffer.concat([
    open(1, 'echo'),
    ...Array.from({ length: MUX_STREAM_WINDOW_BYTES / MUX_MAX_FRAME_BYTES + 1 }, () =>
      Buffer.concat([muxHeader(MuxType.DATA, 0, 1, MUX_MAX_FRAME_BYTES), Buffer.alloc(MUX_MAX_FRAME_BYTES)]),
    ),
  ]),
  'a WINDOW_UPDATE on stream 0': muxHeader(MuxType.WINDOW_UPDATE, 0, 0, 10),
  'credit beyond the window (bytes never sent)': muxHeader(MuxType.WINDOW_UPDATE, 0, 101, 1),
};

for (const [name, bytes] of Object.entries(CASES)) {
  test(`${name}: GO_AWAY PROTOCOL_ERROR, the session closed and logged with its code, the process goes on`, async (t) => {
    const echo = await echoService(t);
    const pair = await muxPair(t, { echo: echo.port });
    const received: Buffer[] = [];
    pair.channel.on('data', (d: Buffer) => received.push(d));
    pair.channel.on('error', () => undefined); // the device may reset what it no longer reads
    pair.channel.resume();
    // A good stream first: the broken frame takes it down with the session.
    pair.channel.write(open(101, 'echo'));
    const svc = await new Promise<Socket>((resolve) => echo.server.once('connection', resolve));
    pair.channel.write(bytes);
    const outcome = await pair.outcome;
    t.is(outcome.streams, 1);
    if (!pair.channel.destroyed) await new Promise((r) => pair.channel.once('close', r));
    const all = Buffer.concat(received);
    const last = all.subarray(all.length - MUX_HEADER_BYTES);
    t.deepEqual([last[1], last.readUInt32BE(8)], [MuxType.GO_AWAY, MuxGoAway.PROTOCOL_ERROR]);
    t.true(
      pair.deviceLines.some((l) => l.code === ErrorCodes.PROTOCOL && String(l.msg).includes('broke the framing')),
      'logged with the code',
    );
    t.deepEqual(pair.counts, { sessionProtocolErrors: 1 }, 'counted (the agent status counter)');
    if (!svc.destroyed) await once(svc, 'close');
    t.pass('the service connection of the live stream was closed');
    // Still serving: a new session on the same process works.
    const again = await muxPair(t, { echo: echo.port });
    again.channel.resume();
    again.channel.write(open(1, 'echo'));
    const [answer] = (await once(again.channel, 'data')) as [Buffer];
    t.deepEqual([answer[1], answer.readUInt16BE(2), answer.readUInt32BE(4)], [MuxType.WINDOW_UPDATE, MuxFlag.ACK, 1]);
  });
}
