/**
 * Relay plans (issue 15): the device says in its verdict when it will join the relay, the server
 * passes that on with the offer, and the client joins only then. A request whose direct path wins
 * first makes no relay leg at the server, and its client releases the offer over its own request
 * connection (RELAY_RELEASE), so the device's relay share is free at once, not at the join deadline.
 * - direct wins: no client join at the server, the offer released, the share free for the next request;
 * - relayed: the client joins when the device does (told RELAY_NOW when the device comes sooner than
 *   its plan said), the session pairs and carries bytes;
 * - a stranger cannot release the offer: not as a first frame, not on a connection of its own;
 * - a client that offers no ALPN (an older one) gets no plan and joins as before.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { connect, type Tunnel } from '../../agent/client/client.js';
import { createAgent } from '../../agent/device/agent.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { loadAgentSettings } from '../../agent/device/settings.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType, type Frame } from '../../agent/protocol/frames.js';
import { deriveRequestTagKey, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import { connectToServer } from '../../agent/rendezvous/server-tls.js';
import type { RelayLimits } from '../../agent/server/relay.js';
import type { RendezvousServer } from '../../agent/server/server.js';
import { createLoopbackSetup, type LoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { httpGet, sample } from '../helpers/multi-node.js';
import {
  createServerPki,
  echoService,
  LOOPBACK,
  startLoopbackServer,
  startServer,
  tempDir,
  waitUntil,
  type Cleanup,
} from '../helpers/harness.js';
import { secureTo } from '../helpers/hostile-sockets.js';
import { wakeFor } from '../helpers/wake.js';

/** Far beyond any test here: what happens earlier cannot be this deadline at work. */
const LONG_MS = 120_000;

async function flow(
  t: Cleanup,
  relay: Partial<RelayLimits>,
  o: { directDialOnly?: boolean; dialExtra?: string } = {},
): Promise<{ server: RendezvousServer; setup: LoopbackSetup; open: (advertisePort?: number) => Promise<Tunnel> }> {
  const servicePort = await echoService(t);
  const setup = await createLoopbackSetup({
    dir: await tempDir(t),
    services: { echo: `${LOOPBACK}:${servicePort}` },
    ...(o.directDialOnly ? { directDialOnly: true } : {}),
    ...(o.dialExtra ? { dialExtra: o.dialExtra } : {}),
  });
  const server = await startLoopbackServer(t, setup, { relay, metrics: { host: LOOPBACK, port: 0 } });
  const agent = createAgent({ identity: await loadIdentity(setup.identityFile), settings: await loadAgentSettings(setup.agentConfig) });
  await agent.start();
  t.teardown(() => agent.stop());
  await waitUntil(() => agent.status().state === 'registered', 'the agent to register', 10_000);
  const open = async (advertisePort?: number): Promise<Tunnel> => {
    const tunnel = await connect({
      server: { host: LOOPBACK, port: setup.tlsPort },
      serverName: 'localhost',
      caPem: setup.caPem,
      equipmentId: setup.equipmentId,
      password: setup.password,
      service: 'echo',
      accept: { host: LOOPBACK, port: 0 },
      ...(advertisePort ? { advertisePort } : {}),
    });
    t.teardown(() => tunnel.stream.destroy());
    return tunnel;
  };
  return { server, setup, open };
}

async function echoes(tunnel: Tunnel, text: string): Promise<boolean> {
  tunnel.stream.write(text);
  let got = '';
  return new Promise((resolve) => {
    tunnel.stream.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) resolve(got === text);
    });
    tunnel.stream.once('close', () => resolve(false));
  });
}

test('a request whose direct path wins makes no relay join at the server, and its offer gives the share back when the request ends', async (t) => {
  // One relay share per device, and a device that would join the relay only after 60 s: every
  // offer here must be released by its client, or the next request gets none.
  const { server, open } = await flow(t, { maxSessionsPerDevice: 1, joinTimeoutMs: LONG_MS }, { dialExtra: 'relay_after_ms = 60000' });
  for (let i = 1; i <= 3; i++) {
    const tunnel = await open();
    t.true(tunnel.path.startsWith('connected directly'), tunnel.path);
    t.true(await echoes(tunnel, `request ${i}`));
    await waitUntil(() => server.relay.counters.get('released') === i, `the offer of request ${i} to be released`);
    tunnel.stream.destroy();
  }
  t.is(server.relay.counters.get('offered'), 3, 'every request was offered the relay: the share was free each time');
  t.is(server.relay.counters.get('refusedPerDevice'), 0);
  t.is(server.broker.counters.get('relayClientJoins'), 0, 'a client joined the relay although its direct path won');
  t.is(server.relay.counters.get('withdrawn'), 0);
  t.is(server.relay.counters.get('expired'), 0);
  const m = (await httpGet(server.metricsAddress()!.port, '/metrics')).body;
  t.is(sample(m, /^peerlink_relay_client_joins_total/), 0);
  t.is(sample(m, /^peerlink_relay_sessions_total\{outcome="released"/), 3);
});

test('a relayed request still connects: the device, its dial refused, joins before its plan said, and the server tells the client to join now', async (t) => {
  // A device that would join only after 60 s, unless every direct attempt fails sooner.
  const { server, open } = await flow(t, { joinTimeoutMs: LONG_MS }, { directDialOnly: true, dialExtra: 'relay_after_ms = 60000' });
  // The advertised port is closed: the device's dial is refused, only the relay is left.
  const tunnel = await open(await freePort());
  t.true(tunnel.path.startsWith('relayed via server'), tunnel.path);
  t.true(await echoes(tunnel, 'through the relay'));
  t.is(server.relay.counters.get('toldNow'), 1, 'the client was not told that the device waits at the relay');
  t.is(server.broker.counters.get('relayClientJoins'), 1);
  t.is(server.relay.counters.get('paired'), 1);
  t.is(server.relay.counters.get('released'), 0, 'a relayed request released its own offer');
});

/** A kept client connection that knows relay plans, after one request (for a device nobody registered). */
async function keptConnection(t: Cleanup, port: number, caPem: string): Promise<{ tls: TLSSocket; channel: FrameChannel }> {
  const tls = await connectToServer({ host: LOOPBACK, port, serverName: 'localhost', caPem });
  t.teardown(() => tls.destroy());
  const channel = new FrameChannel(tls);
  const hello = await channel.next(5_000);
  if (hello.type !== FrameType.HELLO) throw new Error('expected HELLO');
  const key = randomBytes(32);
  const sealed = sealRequest(
    { clientNonce: randomBytes(NONCE_BYTES), timestampMs: hello.serverTimeMs, equipmentId: 'NOBODY-1', service: 'echo', advertisedPort: 9 },
    deriveRequestTagKey(key),
  );
  channel.send({
    type: FrameType.CONNECT_REQUEST,
    equipmentId: 'NOBODY-1',
    advertisedPort: 9,
    wake: wakeFor(key, 'NOBODY-1', sealed),
    sealedRequest: sealed,
  });
  const result = await channel.next(5_000);
  if (result.type !== FrameType.CONNECT_RESULT) throw new Error('expected CONNECT_RESULT');
  if ((await channel.next(5_000)).type !== FrameType.HELLO) throw new Error('expected the HELLO of a kept connection');
  return { tls, channel };
}

test("a stranger cannot release someone else's relay offer: not as a first frame, not over a connection of its own (nor flood releases)", async (t) => {
  const pki = createServerPki();
  const s = await startServer(t, pki, { relay: { maxSessionsPerDevice: 1, joinTimeoutMs: LONG_MS } });
  const port = s.tlsAddress().port;
  const requestId = randomBytes(16);
  // The offer as the server makes it for a client that knows plans: bound to that client's connection.
  const clientsConnection = new FrameChannel(new PassThrough());
  t.true(s.relay.offer(requestId, 'TV-1', LOOPBACK, clientsConnection).ok);

  // The request ID is in the clear in the NOTIFY: a stranger sends it as its first frame ...
  const first = await secureTo(t, port, pki.caPem);
  first.channel.send({ type: FrameType.RELAY_RELEASE, requestId });
  await waitUntil(() => s.broker.counters.get('badFirstFrame') === 1, 'the server to refuse a release as a first frame');
  // ... or on a kept connection of its own, between its requests.
  const own = await keptConnection(t, port, pki.caPem);
  own.channel.send({ type: FrameType.RELAY_RELEASE, requestId });
  await waitUntil(() => s.relay.counters.get('releaseIgnored') === 1, "the stranger's release to be read and ignored");
  t.true(s.relay.has(requestId), 'the offer was released by a stranger');
  t.like(s.relay.offer(randomBytes(16), 'TV-1', LOOPBACK), { ok: false, reason: 'per_device' }, 'the share is still held');
  t.false(own.tls.destroyed, 'a release is a valid frame between requests');
  // One release per request served on a connection (each got at most one offer): more is not a client.
  own.channel.send({ type: FrameType.RELAY_RELEASE, requestId });
  await waitUntil(
    () => own.tls.destroyed || own.tls.readableEnded,
    'the server to close a connection that releases more than it was offered',
  );
  t.is(s.relay.counters.get('releaseIgnored'), 1);

  // The client's own release, over the connection the offer was made on, frees it.
  t.true(s.relay.release(requestId, clientsConnection));
  t.false(s.relay.has(requestId));
  t.true(s.relay.offer(randomBytes(16), 'TV-1', LOOPBACK).ok, 'the share came back');
  t.is(s.relay.counters.get('released'), 1);
});

test('a client that offers no ALPN (an older one) gets the offer without a plan, as before', async (t) => {
  const { setup, server } = await flow(t, { joinTimeoutMs: LONG_MS });
  const older = await secureTo(t, setup.tlsPort, setup.caPem); // a TLS client with no ALPN, past its HELLO
  const key = (await loadIdentity(setup.identityFile)).accessKey;
  const acceptPort = await freePort();
  const sealed = sealRequest(
    {
      clientNonce: randomBytes(NONCE_BYTES),
      timestampMs: Date.now(),
      equipmentId: setup.equipmentId,
      service: 'echo',
      advertisedPort: acceptPort,
    },
    deriveRequestTagKey(key),
  );
  older.channel.send({
    type: FrameType.CONNECT_REQUEST,
    equipmentId: setup.equipmentId,
    advertisedPort: acceptPort,
    wake: wakeFor(key, setup.equipmentId, sealed),
    sealedRequest: sealed,
  });
  const frames: Frame[] = [];
  do frames.push(await older.channel.next(15_000));
  while (frames.at(-1)!.type !== FrameType.HELLO);
  t.deepEqual(
    frames.map((f) => f.type),
    [FrameType.RELAY_OFFER, FrameType.CANDIDATES, FrameType.CONNECT_RESULT, FrameType.HELLO],
  );
  const result = frames[2]!;
  t.is(result.type === FrameType.CONNECT_RESULT ? result.status : -1, Status.OK);
  t.is(server.relay.counters.get('offered'), 1);
});
