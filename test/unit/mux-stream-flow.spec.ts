/**
 * Flow control per stream of a mux session (agent/session/mux-session.ts), real sockets: a stream
 * nobody reads holds at most its window (the device stops reading that service) while another
 * stream goes on; and bytes still waiting for credit when both ends have closed are delivered
 * before the stream's FIN (not cut by a reset).
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { MUX_STREAM_WINDOW_BYTES } from '../../agent/protocol/mux-frames.js';
import { echoService } from '../helpers/flow.js';
import { muxClient, muxPair } from '../helpers/mux-pair.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readAll(s: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

test('a stream nobody reads holds at most its window; another stream of the session goes on; then it completes', async (t) => {
  const total = 16 * 1024 * 1024;
  const payload = randomBytes(total);
  let written = 0;
  const big = createServer((s: Socket) => {
    s.on('error', () => undefined);
    const more = (): void => {
      while (written < total) {
        const chunk = payload.subarray(written, written + 64 * 1024);
        written += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', more);
      }
      s.end();
    };
    more();
  });
  await new Promise<void>((r) => big.listen(0, '127.0.0.1', r));
  t.teardown(() => void big.close());
  const echo = await echoService(t);
  const pair = await muxPair(t, { big: (big.address() as { port: number }).port, echo: echo.port });
  const client = muxClient(t, pair);

  const stalled = await client.open('big');
  stalled.pause();
  await wait(500);
  t.true(stalled.readableLength > 0, 'bytes came');
  t.true(stalled.readableLength <= MUX_STREAM_WINDOW_BYTES, `held ${stalled.readableLength}: at most one window`);
  t.true(written < total, 'the service was stopped by the window (its socket buffers filled)');

  const other = await client.open('echo');
  other.end('still flowing');
  t.is((await readAll(other)).toString(), 'still flowing');

  const got = await readAll(stalled.resume());
  t.is(got.length, total);
  t.is(sha(got), sha(payload));
});

test('bytes still waiting for credit when both ends have closed arrive whole, then the end', async (t) => {
  const echo = await echoService(t);
  const pair = await muxPair(t, { echo: echo.port });
  const client = muxClient(t, pair);
  const svcClosed = new Promise<void>((r) => echo.server.once('connection', (s: Socket) => s.once('close', () => r())));
  const data = randomBytes(4 * MUX_STREAM_WINDOW_BYTES);
  const s = await client.open('echo');
  s.pause();
  s.end(data);
  // The service echoed all and closed; the device holds what exceeds our window (we do not read).
  await svcClosed;
  await wait(100);
  const got = await readAll(s.resume());
  t.is(got.length, data.length);
  t.is(sha(got), sha(data));
});
