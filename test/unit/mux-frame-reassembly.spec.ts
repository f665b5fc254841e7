/**
 * The mux frame reader joins a frame split across chunks once its bytes have all arrived (issue
 * 15's review: it used to concatenate at every chunk, quadratic in a frame fed in tiny records).
 * Fed one byte at a time, or in uneven pieces, every frame comes out whole and in order.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { MuxFrameReader, MuxType, muxHeader } from '../../agent/protocol/mux-frames.js';

function frames(): { wire: Buffer; payloads: Buffer[] } {
  const payloads = [randomBytes(64 * 1024), randomBytes(1), randomBytes(3000)];
  const parts: Buffer[] = [];
  for (const [i, p] of payloads.entries()) {
    parts.push(muxHeader(MuxType.DATA, 0, 2 * i + 1, p.length), p);
    parts.push(muxHeader(MuxType.WINDOW_UPDATE, 0, 2 * i + 1, 100));
  }
  return { wire: Buffer.concat(parts), payloads };
}

for (const step of [1, 7, 4096]) {
  test(`fed ${step} byte(s) at a time: every frame whole, in order`, (t) => {
    const { wire, payloads } = frames();
    const got: Buffer[] = [];
    let controls = 0;
    const reader = new MuxFrameReader({
      data: (_id, _flags, p) => void got.push(Buffer.from(p)),
      control: () => void controls++,
    });
    for (let at = 0; at < wire.length; at += step) reader.push(wire.subarray(at, at + step));
    t.is(got.length, payloads.length);
    for (const [i, p] of payloads.entries()) t.true(got[i]!.equals(p), `frame ${i}`);
    t.is(controls, payloads.length);
  });
}
