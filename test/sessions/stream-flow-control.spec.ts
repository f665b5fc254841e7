/**
 * Per-stream flow control: a large download on one stream of a session, whose reader has stopped
 * reading, does not stall a small request on another stream of the same session; the download
 * then goes on when it is read again.
 */
import test from 'ava';
import { createServer } from 'node:net';
import { SESSION_STREAM_WINDOW_BYTES } from '../../agent/protocol/session-streams.js';
import { echoService } from '../helpers/flow.js';
import { listenTcp, sleep } from '../helpers/harness.js';
import { roundTrip, sessionClient, startMeteredFlow } from '../helpers/sessions.js';

const DOWNLOAD_BYTES = 64 * 1024 * 1024;

/** A service that sends DOWNLOAD_BYTES to each connection, at the pace the connection takes them. */
async function bulkService(t: Parameters<typeof listenTcp>[0]): Promise<{ port: number; written: () => number }> {
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const port = await listenTcp(
    t,
    createServer((s) => {
      s.on('error', () => undefined);
      let left = DOWNLOAD_BYTES;
      const pump = (): void => {
        while (left > 0) {
          left -= chunk.length;
          written += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    }),
  );
  return { port, written: () => written };
}

test('a download nobody reads on one stream does not stall a small request on another stream of the session', async (t) => {
  const echo = await echoService(t);
  const bulk = await bulkService(t);
  const flow = await startMeteredFlow(t, { services: { echo: `127.0.0.1:${echo.port}`, bulk: `127.0.0.1:${bulk.port}` } });
  const client = sessionClient(t, flow, 'echo');

  const download = await client.open(undefined, 'bulk');
  let received = 0;
  let holding = true;
  download.stream.on('data', (d: Buffer) => {
    received += d.length;
    if (holding && received >= 4 * SESSION_STREAM_WINDOW_BYTES) download.stream.pause();
  });
  // Let the download fill everything it may: its stream window, the buffers on both ends.
  let last = -1;
  while (received !== last) {
    last = received;
    await sleep(300);
  }
  t.log(`stalled at ${received} bytes received, ${bulk.written()} written by the service`);
  t.true(received < DOWNLOAD_BYTES, 'the download is stalled by its reader, not finished');
  t.true(bulk.written() < DOWNLOAD_BYTES, 'and the service is held back by flow control');

  const small = await client.open();
  t.true(small.reused, 'the small request rides the same session');
  t.is(await roundTrip(small.stream, 'small request'), 'small request');

  // The download resumes and completes.
  const done = new Promise<void>((resolve) => download.stream.once('end', () => resolve()));
  holding = false;
  download.stream.resume();
  await done;
  t.is(received, DOWNLOAD_BYTES);
  t.is(await flow.rendezvous(), 1);
});
