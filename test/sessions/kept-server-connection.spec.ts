/**
 * The client keeps its TLS connection to the rendezvous server between requests: 10 sequential
 * connection requests from one client (a rendezvous each, no session) cost one client connection,
 * hence one TLS handshake, at the server, and all 10 are answered; with serverKeepMs 0 each
 * request has its own connection, as before.
 */
import test from 'ava';
import { echoService } from '../helpers/flow.js';
import { roundTrip } from '../helpers/sessions.js';
import { clientConnections, connected, handshakes, rendezvousClient, startCountedFlow } from '../helpers/server-link.js';

const N = 10;

test('10 sequential requests from one client: 1 client connection at the server, 10 answered', async (t) => {
  const echo = await echoService(t);
  const flow = await startCountedFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const client = rendezvousClient(t, flow, 'echo');
  const before = { handshakes: await handshakes(flow), connections: await clientConnections(flow) };
  const answers: string[] = [];
  for (let i = 0; i < N; i++) {
    const tunnel = await client.open(AbortSignal.timeout(20_000));
    t.not(tunnel.reused, true, 'each open() is a rendezvous (no session)');
    answers.push(await roundTrip(tunnel.stream, `req-${i}`));
  }
  t.deepEqual(
    answers,
    Array.from({ length: N }, (_, i) => `req-${i}`),
  );
  t.is(await connected(flow), N, 'every request answered ok');
  t.is((await clientConnections(flow)) - before.connections, 1, 'one client connection for all requests');
  t.is(await flow.metric('peerlink_client_connections_total', 'event="kept_request"'), N - 1, 'the others rode the kept one');
  // The rest of the handshakes are the device's attaches (one per request at most).
  t.true((await handshakes(flow)) - before.handshakes <= 1 + N, 'one client handshake, not one per request');
});

test('serverKeepMs 0: a connection (and a handshake) per request', async (t) => {
  const echo = await echoService(t);
  const flow = await startCountedFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const client = rendezvousClient(t, flow, 'echo', { serverKeepMs: 0 });
  for (let i = 0; i < 3; i++) {
    const tunnel = await client.open(AbortSignal.timeout(20_000));
    t.is(await roundTrip(tunnel.stream, `req-${i}`), `req-${i}`);
  }
  t.is(await clientConnections(flow), 3);
  t.is(await flow.metric('peerlink_client_connections_total', 'event="kept_request"'), 0);
});
