/**
 * The device closes a session with no stream open for its idleMs (idle-close.ts): at once if no
 * stream ever came, and after the last stream is gone; the streams it carried are in its outcome.
 */
import test from 'ava';
import type { Duplex } from 'node:stream';
import { echoService } from '../helpers/flow.js';
import { muxClient, muxPair } from '../helpers/mux-pair.js';

const IDLE_MS = 200;

function roundTrip(s: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    s.once('data', (d: Buffer) => resolve(d.toString()));
    s.once('error', reject);
    s.write(text);
  });
}

test('a session no stream ever used is closed after idleMs', async (t) => {
  const echo = await echoService(t);
  const pair = await muxPair(t, { echo: echo.port }, { idleMs: IDLE_MS });
  const outcome = await pair.outcome;
  t.is(outcome.streams, 0);
  t.true(pair.deviceLines.some((l) => l.msg === 'session idle: closed' && l.idleMs === IDLE_MS));
});

test('a session is closed after idleMs once its last stream is gone, having carried it', async (t) => {
  const echo = await echoService(t);
  const pair = await muxPair(t, { echo: echo.port }, { idleMs: IDLE_MS });
  const client = muxClient(t, pair);
  const s = await client.open('echo');
  t.is(await roundTrip(s, 'one'), 'one');
  s.destroy();
  const outcome = await pair.outcome;
  t.is(outcome.streams, 1);
  t.true(pair.deviceLines.some((l) => l.msg === 'session idle: closed'));
  await client.closed;
  t.false(client.alive());
});
