/**
 * A mux session holds at most SESSION_MAX_STREAMS (128) streams at once. The device refuses one
 * past its cap with DEVICE_BUSY (that stream alone); the client does not send one past the cap: it
 * holds it until one of its streams is gone (issue 15's review: past ~160 busy streams the client
 * used to end its own session), and fails a held one that no slot reached in time with DEVICE_BUSY.
 * Real sockets: the device's session serves a real echo service.
 */
import test from 'ava';
import type { Duplex } from 'node:stream';
import { ErrorCodes } from '../../agent/common/errors.js';
import { SESSION_MAX_STREAMS } from '../../agent/protocol/session-streams.js';
import { MUX_HELD_STREAMS_MAX } from '../../agent/session/mux-held.js';
import { echoService } from '../helpers/flow.js';
import { waitUntil } from '../helpers/harness.js';
import { muxClient, muxPair } from '../helpers/mux-pair.js';

function roundTrip(s: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    s.once('data', (d: Buffer) => resolve(d.toString()));
    s.once('error', reject);
    s.write(text);
  });
}

const refusedBusy = (lines: Record<string, unknown>[]): number =>
  lines.filter((l) => l.status === 10 && String(l.msg).includes('too many streams')).length;

test('the device refuses a stream past its cap with DEVICE_BUSY; the others go on; a stream opens again once one is gone', async (t) => {
  const echo = await echoService(t);
  // A device whose cap is below the client's: the client sends the 5th, the device refuses it.
  const pair = await muxPair(t, { echo: echo.port }, { maxStreams: 4 });
  const client = muxClient(t, pair);
  const open = await Promise.all(Array.from({ length: 4 }, () => client.open('echo')));
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
  t.is(refusedBusy(pair.deviceLines), 1);
  t.deepEqual(pair.counts, { streamsRefusedBusy: 1 }, 'the refusal counted (the agent status counter)');
});

test('the client holds the 129th stream (its bytes too) until one of the 128 is gone: the device refuses none', async (t) => {
  const echo = await echoService(t);
  const pair = await muxPair(t, { echo: echo.port });
  const client = muxClient(t, pair, 30_000);
  const open = await Promise.all(Array.from({ length: SESSION_MAX_STREAMS }, () => client.open('echo')));
  // Early: handed over at once, its bytes written before any slot is free.
  const extra = client.openEarly('echo');
  const answer = roundTrip(extra, 'held');
  const more = client.open('echo');
  t.is(client.active(), SESSION_MAX_STREAMS + 2);
  const closed = new Promise((r) => open[0]!.once('close', r));
  open[0]!.destroy();
  await closed;
  t.is(await answer, 'held');
  open[1]!.destroy();
  t.is(await roundTrip(await more, 'second'), 'second');
  t.is(refusedBusy(pair.deviceLines), 0, 'the device refused a stream: the client sent one past the cap');
  t.true(client.alive());
  const rest = await Promise.all(open.slice(2).map((s, i) => roundTrip(s, `n${i}`)));
  t.deepEqual(
    rest,
    open.slice(2).map((_, i) => `n${i}`),
  );
});

test('a held stream that no slot reaches within the answer deadline fails DEVICE_BUSY; too many held fail at once; the session goes on', async (t) => {
  const echo = await echoService(t);
  const pair = await muxPair(t, { echo: echo.port });
  const client = muxClient(t, pair, 2_000);
  const open = await Promise.all(Array.from({ length: SESSION_MAX_STREAMS }, () => client.open('echo')));
  const held = Array.from({ length: MUX_HELD_STREAMS_MAX }, () => client.openEarly('echo'));
  const errors = held.map((s) => new Promise<string | undefined>((r) => s.once('error', (e: { code?: string }) => r(e.code))));
  t.is((t.throws(() => client.openEarly('echo')) as { code?: string }).code, ErrorCodes.DEVICE_BUSY);
  const codes = await Promise.all(errors);
  t.deepEqual(new Set(codes), new Set([ErrorCodes.DEVICE_BUSY]));
  t.true(client.alive());
  await waitUntil(() => client.active() === SESSION_MAX_STREAMS, 'the held streams to be gone');
  t.is(await roundTrip(open[0]!, 'still'), 'still');
  t.is(refusedBusy(pair.deviceLines), 0);
});

test('a held stream gets the whole answer deadline again from its open: the device is not blamed for the time it was held', async (t) => {
  const echo = await echoService(t);
  // Every stream's service connect takes 300 ms at the device; the client gives the device 1 s to answer.
  const pair = await muxPair(t, { echo: echo.port }, { connectDelayMs: 300 });
  const client = muxClient(t, pair, 1_000);
  const open = await Promise.all(Array.from({ length: SESSION_MAX_STREAMS }, () => client.open('echo')));
  const late = client.openEarly('echo');
  const answer = roundTrip(late, 'late');
  // Held 850 ms: counted from its open() the device would have 150 ms left, less than its 300 ms connect.
  await new Promise((r) => setTimeout(r, 850));
  const closed = new Promise((r) => open[0]!.once('close', r));
  open[0]!.destroy();
  await closed;
  t.is(await answer, 'late');
  t.true(client.alive());
  t.is(refusedBusy(pair.deviceLines), 0);
});
