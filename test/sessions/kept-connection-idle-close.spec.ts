/**
 * The server closes a client's connection that stays idle past `requests.client_idle_ms`; the
 * client, which would have kept it longer, sees it closed and makes its next request on a new
 * connection: the request succeeds.
 */
import test from 'ava';
import { echoService } from '../helpers/flow.js';
import { waitUntil } from '../helpers/harness.js';
import { roundTrip } from '../helpers/sessions.js';
import { clientConnections, connected, rendezvousClient, startCountedFlow } from '../helpers/server-link.js';

const SERVER_IDLE_MS = 300;

test('an idle kept connection closed by the server: the next request succeeds on a new one', async (t) => {
  const echo = await echoService(t);
  const flow = await startCountedFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}` },
    serverExtra: `[requests]\nclient_idle_ms = ${SERVER_IDLE_MS}`,
  });
  const client = rendezvousClient(t, flow, 'echo', { serverKeepMs: 60_000 });
  const first = await client.open(AbortSignal.timeout(20_000));
  t.is(await roundTrip(first.stream, 'one'), 'one');
  await waitUntil(
    async () => (await flow.metric('peerlink_client_connections_total', 'event="closed_idle"')) === 1,
    'the server closes the idle connection',
    10_000,
    50,
  );
  const second = await client.open(AbortSignal.timeout(20_000));
  t.is(await roundTrip(second.stream, 'two'), 'two');
  t.is(await connected(flow), 2);
  t.is(await clientConnections(flow), 2, 'the second request came on a new connection');
  t.is(await flow.metric('peerlink_client_connections_total', 'event="kept_request"'), 0);
});
