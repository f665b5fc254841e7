/**
 * A kept connection that dies under a request, before any answer (the server closed it at that
 * moment, a node restart), does not fail the request: the client asks again, once, on a new
 * connection. A proxy in front of the server cuts the kept connection when the second request
 * arrives on it, without passing it on.
 */
import test from 'ava';
import { connect, createServer, type Socket } from 'node:net';
import { echoService } from '../helpers/flow.js';
import { listenTcp } from '../helpers/harness.js';
import { roundTrip } from '../helpers/sessions.js';
import { clientConnections, connected, rendezvousClient, startCountedFlow } from '../helpers/server-link.js';

test('the kept connection cut as a request goes out on it: the request is made again on a new one and succeeds', async (t) => {
  const echo = await echoService(t);
  const flow = await startCountedFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const conns: { client: Socket; upstream: Socket }[] = [];
  /** When set, the next bytes from the client on a kept connection cut it instead of going on. */
  let cutNext = false;
  let cut = 0;
  const proxy = createServer((client) => {
    const upstream = connect(flow.setup.tlsPort, '127.0.0.1');
    const entry = { client, upstream };
    conns.push(entry);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('data', (d: Buffer) => {
      if (cutNext && conns.indexOf(entry) === 0) {
        cutNext = false;
        cut++;
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  t.teardown(() => {
    for (const c of conns) c.client.destroy();
    proxy.close();
  });
  const port = await listenTcp(t, proxy);
  const client = rendezvousClient(t, flow, 'echo', { server: { host: '127.0.0.1', port } });
  const first = await client.open(AbortSignal.timeout(20_000));
  t.is(await roundTrip(first.stream, 'one'), 'one');
  cutNext = true;
  const second = await client.open(AbortSignal.timeout(20_000));
  t.is(await roundTrip(second.stream, 'two'), 'two');
  t.is(cut, 1, 'the request on the kept connection was cut');
  t.is(await clientConnections(flow), 2, 'and made again on a new connection');
  t.is(await connected(flow), 2);
});
