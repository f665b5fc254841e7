/**
 * join() (agent/common/pipe.ts), the copy both ends of every tunnel run: bytes and half-close pass
 * both ways and are counted; the chunks one tick hands over leave in one write (writev), not one
 * write each; a destination that does not drain pauses its source once JOIN_QUEUE_BYTES wait, and
 * the source resumes when it drains.
 */
import test from 'ava';
import { Duplex, PassThrough } from 'node:stream';
import { join, JOIN_QUEUE_BYTES } from '../../agent/common/pipe.js';

/** A Duplex whose writes are recorded (one entry per _write/_writev call) and held until release(). */
function sink(): { stream: Duplex; writes: number[]; release: () => void } {
  const writes: number[] = [];
  const held: (() => void)[] = [];
  let holding = true;
  const settle = (cb: () => void): void => void (holding ? held.push(cb) : cb());
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      writes.push(chunk.length);
      settle(() => cb());
    },
    writev(chunks, cb) {
      writes.push(chunks.reduce((n, c) => n + (c.chunk as Buffer).length, 0));
      settle(() => cb());
    },
  });
  return {
    stream,
    writes,
    release: () => {
      holding = false;
      for (const cb of held.splice(0)) cb();
    },
  };
}

/** join() writes what a turn of the loop brought at the turn's end (setImmediate): wait past it. */
const afterTurn = async (): Promise<void> => {
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
};

test('bytes and half-close pass both ways, counted', async (t) => {
  // Stand-ins for sockets: push() is what their peer sent; writes are recorded.
  const fromA: Buffer[] = [];
  const fromB: Buffer[] = [];
  const outA = new Duplex({
    read() {},
    write(c: Buffer, _e, cb) {
      fromB.push(c);
      cb();
    },
    final(cb) {
      cb();
    },
  });
  const outB = new Duplex({
    read() {},
    write(c: Buffer, _e, cb) {
      fromA.push(c);
      cb();
    },
    final(cb) {
      cb();
    },
  });
  const result = join(outA, outB);
  outA.push(Buffer.from('hello '));
  outA.push(Buffer.from('device'));
  outA.push(null); // the client half-closes
  outB.push(Buffer.from('answer'));
  await afterTurn();
  t.is(Buffer.concat(fromA).toString(), 'hello device');
  t.is(Buffer.concat(fromB).toString(), 'answer');
  t.true(outB.writableEnded, 'the half-close reached the other side');
  t.false(outA.writableEnded, 'the other direction is still open');
  outB.push(null);
  await afterTurn();
  t.true(outA.writableEnded);
  outA.destroy();
  outB.destroy();
  const r = await result;
  t.deepEqual(r, { bytesAtoB: 12, bytesBtoA: 6 });
});

test('the chunks of one tick leave in one write, not one each', async (t) => {
  const src = new PassThrough();
  const dst = sink();
  dst.release();
  void join(src, dst.stream);
  const chunk = Buffer.alloc(16 * 1024, 1);
  // As TLS hands over a 64 KiB read: four records' plaintext in one go.
  for (let i = 0; i < 4; i++) src.write(chunk);
  await new Promise((r) => setImmediate(r));
  t.is(
    dst.writes.reduce((a, b) => a + b, 0),
    4 * chunk.length,
  );
  t.true(dst.writes.length < 4, `${dst.writes.length} writes for 4 chunks`);
  src.destroy();
});

test('a destination that does not drain pauses its source past JOIN_QUEUE_BYTES; draining resumes it', async (t) => {
  const src = new PassThrough();
  const dst = sink();
  void join(src, dst.stream);
  const chunk = Buffer.alloc(16 * 1024, 2);
  // Not all in one tick: each write's data event comes on its own.
  for (let i = 0; i < (2 * JOIN_QUEUE_BYTES) / chunk.length; i++) {
    src.write(chunk);
    await new Promise((r) => setImmediate(r));
  }
  t.false(src.readableFlowing, 'the source is paused');
  const queued = dst.stream.writableLength;
  t.true(queued >= JOIN_QUEUE_BYTES && queued < JOIN_QUEUE_BYTES + 2 * chunk.length, `queued ${queued}`);
  t.true(src.readableLength > 0, 'the rest waits at the source');
  dst.release();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.true(src.readableFlowing === true, 'resumed once drained');
  src.destroy();
});

test('a destination that closes while its source waits for drain does not leave the source paused', async (t) => {
  // A source whose two directions are independent (a socket): ending what is written to it leaves its reading alone.
  const src = new Duplex({
    read() {},
    write(_c, _e, cb) {
      cb();
    },
  });
  const dst = sink();
  void join(src, dst.stream);
  const chunk = Buffer.alloc(16 * 1024, 3);
  for (let i = 0; i < (2 * JOIN_QUEUE_BYTES) / chunk.length; i++) {
    src.push(chunk);
    await new Promise((r) => setImmediate(r));
  }
  t.false(src.readableFlowing);
  // It ended its own direction cleanly first, so join() does not destroy the source with it.
  dst.stream.push(null);
  await new Promise((r) => setImmediate(r));
  t.true(dst.stream.readableEnded);
  dst.stream.destroy();
  await new Promise((r) => setImmediate(r));
  t.false(src.destroyed);
  t.true(src.readableFlowing === true, 'the source flows on');
  src.destroy();
});
