/**
 * join() (agent/common/pipe.ts) batches by turn of the event loop, not by tick: a TCP socket with
 * much queued is read 64 KiB at a time, several reads in one turn, each its own I/O callback; those
 * reads leave in one write (a writev), which is one SSL_write when the destination is the tunnel's
 * TLS channel and one wake-up of the next process instead of one per read (issue 15). The batch
 * ends where the source pauses: at JOIN_QUEUE_BYTES by default, TUNNEL_JOIN_QUEUE_BYTES for a whole
 * tunnel.
 */
import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { join, JOIN_QUEUE_BYTES, TUNNEL_JOIN_QUEUE_BYTES } from '../../agent/common/pipe.js';

/** The most bytes one read of a TCP socket hands over (libuv's buffer). */
const READ_BYTES = 64 * 1024;

/** A destination that records the size of each write it is given (one entry per _write/_writev). */
function recorder(): { stream: Duplex; writes: number[] } {
  const writes: number[] = [];
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      writes.push(chunk.length);
      cb();
    },
    writev(chunks, cb) {
      writes.push(chunks.reduce((n, c) => n + (c.chunk as Buffer).length, 0));
      cb();
    },
  });
  return { stream, writes };
}

/** A real TCP connection whose accepted end has `bytes` waiting in the kernel before anyone reads it. */
async function loadedSocket(bytes: number): Promise<{ src: Socket; close: () => void }> {
  const server = createServer({ pauseOnConnect: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const peer = connect(port, '127.0.0.1');
  await once(peer, 'connect');
  peer.end(Buffer.alloc(bytes, 7));
  const [src] = await accepted;
  // Until the kernel holds what the peer sent (or as much as it takes: the rest follows as it is read).
  await new Promise((r) => setTimeout(r, 200));
  return {
    src,
    close: () => {
      peer.destroy();
      src.destroy();
      server.close();
    },
  };
}

async function writesOf(bytes: number, queueBytes?: number): Promise<number[]> {
  const { src, close } = await loadedSocket(bytes);
  const dst = recorder();
  const ended = once(src, 'end');
  void join(src, dst.stream, queueBytes);
  await ended;
  await new Promise((r) => setImmediate(r));
  close();
  return dst.writes;
}

test('the reads of one turn of the loop leave in one write, up to JOIN_QUEUE_BYTES', async (t) => {
  const total = 4 * 1024 * 1024;
  const writes = await writesOf(total);
  t.is(
    writes.reduce((a, b) => a + b, 0),
    total,
  );
  const largest = Math.max(...writes);
  // One write per read would never exceed one read's worth.
  t.true(largest > READ_BYTES, `largest write ${largest} bytes (${writes.length} writes)`);
  t.true(largest <= JOIN_QUEUE_BYTES + READ_BYTES, `largest write ${largest} bytes`);
});

test('a whole tunnel (TUNNEL_JOIN_QUEUE_BYTES) batches past the default bound', async (t) => {
  const total = 4 * 1024 * 1024;
  const writes = await writesOf(total, TUNNEL_JOIN_QUEUE_BYTES);
  t.is(
    writes.reduce((a, b) => a + b, 0),
    total,
  );
  const largest = Math.max(...writes);
  t.true(largest > JOIN_QUEUE_BYTES + READ_BYTES, `largest write ${largest} bytes (${writes.length} writes)`);
  t.true(largest <= TUNNEL_JOIN_QUEUE_BYTES + READ_BYTES, `largest write ${largest} bytes`);
});
