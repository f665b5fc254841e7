/**
 * A kept client connection bypasses no limit: every request on it goes through admission as a
 * request on a new connection would. With `requests_per_source` at a burst of 3, the fourth and
 * fifth requests on the same kept connection are refused RATE_LIMITED, and the connection stays
 * usable (it carried all five).
 */
import test from 'ava';
import { ErrorCodes } from '../../agent/common/errors.js';
import { echoService } from '../helpers/flow.js';
import { roundTrip } from '../helpers/sessions.js';
import { clientConnections, connected, rendezvousClient, startCountedFlow } from '../helpers/server-link.js';

const BURST = 3;

test('requests_per_source applies to each request on a kept connection', async (t) => {
  const echo = await echoService(t);
  const flow = await startCountedFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}` },
    serverExtra: `[limits]\nrequests_per_source_per_min = 1\nrequests_per_source_burst = ${BURST}`,
  });
  const client = rendezvousClient(t, flow, 'echo');
  for (let i = 0; i < BURST; i++) {
    const tunnel = await client.open(AbortSignal.timeout(20_000));
    t.is(await roundTrip(tunnel.stream, `req-${i}`), `req-${i}`);
  }
  for (let i = 0; i < 2; i++) {
    await t.throwsAsync(client.open(AbortSignal.timeout(20_000)), { code: ErrorCodes.RATE_LIMITED });
  }
  t.is(await connected(flow), BURST);
  t.is(await flow.metric('peerlink_connection_requests_total', 'outcome="rate_limited_source"'), 2);
  t.is(await clientConnections(flow), 1, 'all five requests came over one kept connection');
});
