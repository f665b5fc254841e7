/**
 * A mux session holds at most SESSION_MAX_STREAMS (128) streams at once: the device refuses the
 * 129th with DEVICE_BUSY (that stream alone), the 128 go on, and a stream opens again once one of
 * them is gone. Real sockets: the device's session serves a real echo service.
 */
import test from 'ava';
import type { Duplex } from 'node:stream';
import { ErrorCodes } from '../../agent/common/errors.js';
import { SESSION_MAX_STREAMS } from '../../agent/protocol/session-streams.js';
import { echoService } from '../helpers/flow.js';
import { muxClient, muxPair } from '../helpers/mux-pair.js';

function roundTrip(s: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    s.once('data', (d: Buffer) => resolve(d.toString()));
    s.once('error', reject);
    s.write(text);
  });
}

test('the 129th stream at once is refused DEVICE_BUSY; the 128 go on; a stream opens again once one is gone', async (t) => {
  const echo = await echoService(t);
  const pair = await muxPair(t, { echo: echo.port });
  const client = muxClient(t, pair);
  const open = await Promise.all(Array.from({ length: SESSION_MAX_STREAMS }, () => client.open('echo')));
  const over = await t.throwsAsync(client.open('echo'));
  t.is((over as { code?: string }).code, ErrorCodes.DEVICE_BUSY);
  t.is(over?.name, 'StreamRefusedError');
  t.true(client.alive(), 'the session stays up');
  const answers = await Promise.all(open.map((s, i) => roundTrip(s, `n${i}`)));
  t.deepEqual(
    answers,
    open.map((_, i) => `n${i}`),
  );
  const closed = new Promise((r) => open[0]!.once('close', r));
  open[0]!.destroy();
  await closed;
  // The reset reaches the device before the next open (one channel, in order).
  const again = await client.open('echo');
  t.is(await roundTrip(again, 'again'), 'again');
  t.true(pair.deviceLines.some((l) => l.status === 10 && String(l.msg).includes('too many streams')));
});
