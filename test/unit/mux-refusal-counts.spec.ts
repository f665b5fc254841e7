/**
 * The device counts each stream it refuses, by reason (agent/session/session-counts.ts; the
 * agent's counters, shown by `peerlink-agent status`): not in the allow-list or no service name,
 * its service refused the connection. (At the cap: mux-stream-caps; broken framing: mux-malformed-frames.)
 */
import test from 'ava';
import { ErrorCodes } from '../../agent/common/errors.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService } from '../helpers/flow.js';
import { muxClient, muxPair } from '../helpers/mux-pair.js';

test('refused streams are counted by reason; an accepted one is not; the session goes on', async (t) => {
  const echo = await echoService(t);
  const pair = await muxPair(t, { echo: echo.port, closed: await freePort() });
  const client = muxClient(t, pair);
  const code = async (service: string): Promise<string | undefined> =>
    ((await t.throwsAsync(client.open(service))) as { code?: string } | undefined)?.code;
  t.is(await code('secret'), ErrorCodes.SERVICE_REFUSED);
  t.is(await code('not a name!'), ErrorCodes.PROTOCOL); // BAD_REQUEST
  t.is(await code('closed'), ErrorCodes.SERVICE_UNAVAILABLE);
  const ok = await client.open('echo');
  ok.destroy();
  t.true(client.alive());
  t.deepEqual(pair.counts, { streamsRefusedService: 2, streamsRefusedUnavailable: 1 });
});
