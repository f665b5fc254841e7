/**
 * The device keeps its attach connection for a while after a request (issue 15, kept-connection.ts
 * and agent/server/kept-devices.ts): the next requests reach it over that connection, with no UDP
 * notification and no new TLS handshake; a kept connection that dies sends the next request back
 * to the patent's path (a UDP notification), which succeeds; both sides close it once idle. Requests
 * in flight together each have one (up to KEPT_PER_DEVICE / DEVICE_KEEP_MAX).
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { connect as tcpConnect, createServer as createTcpServer, type Socket } from 'node:net';
import { connect } from '../../agent/client/client.js';
import { createAgent, type Agent } from '../../agent/device/agent.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { loadAgentSettings } from '../../agent/device/settings.js';
import { createRendezvousServer, type RendezvousServer, type RendezvousServerOptions } from '../../agent/server/server.js';
import { createLoopbackSetup, type LoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { echoService, listenTcp, LOOPBACK, sleep, tempDir, waitUntil } from '../helpers/harness.js';

const EQUIPMENT_ID = 'KEPT-DEVICE';

/** A plain TCP forwarder between the agent and the server's TLS port: `kill` cuts its connections, `freeze` stalls them. */
async function forwarder(t: ExecutionContext, upstreamPort: number): Promise<{ port: number; kill(): void; freeze(): void }> {
  const pairs = new Set<[Socket, Socket]>();
  const port = await listenTcp(
    t,
    createTcpServer((down) => {
      const up = tcpConnect(upstreamPort, LOOPBACK);
      const pair: [Socket, Socket] = [down, up];
      pairs.add(pair);
      for (const s of pair) {
        s.on('error', () => undefined);
        s.once('close', () => {
          pairs.delete(pair);
          down.destroy();
          up.destroy();
        });
      }
      down.pipe(up);
      up.pipe(down);
    }),
  );
  return {
    port,
    kill: () => {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
    freeze: () => {
      for (const [a, b] of pairs) {
        a.unpipe();
        b.unpipe();
        a.pause();
        b.pause();
      }
      pairs.clear();
    },
  };
}

interface Fixture {
  readonly setup: LoopbackSetup;
  readonly server: RendezvousServer;
  readonly agent: Agent;
  /** Present when the agent reaches the server's TLS port through a forwarder. */
  readonly path?: { kill(): void; freeze(): void };
}

async function fixture(
  t: ExecutionContext,
  o: { keepIdleMs?: number; server?: Partial<RendezvousServerOptions>; viaForwarder?: boolean } = {},
): Promise<Fixture> {
  const dir = await tempDir(t, 'peerlink-kept-');
  const echo = await echoService(t);
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { echo: `${LOOPBACK}:${echo}` } });
  const server = createRendezvousServer({
    udpHost: LOOPBACK,
    udpPort: setup.udpPort,
    tlsHost: LOOPBACK,
    tlsPort: setup.tlsPort,
    certPem: setup.certPem,
    keyPem: setup.keyPem,
    masterKey: setup.masterKey,
    ...o.server,
  });
  await server.start();
  t.teardown(() => server.stop());
  const loaded = await loadAgentSettings(setup.agentConfig);
  const fwd = o.viaForwarder ? await forwarder(t, setup.tlsPort) : undefined;
  const settings = {
    ...loaded,
    server: {
      ...loaded.server,
      ...(o.keepIdleMs !== undefined ? { keepIdleMs: o.keepIdleMs } : {}),
      ...(fwd ? { tlsPort: fwd.port } : {}),
    },
  };
  const agent = createAgent({ identity: await loadIdentity(setup.identityFile), settings });
  await agent.start();
  t.teardown(() => agent.stop());
  await waitUntil(() => agent.status().state === 'registered', 'the agent to register');
  return { setup, server, agent, ...(fwd ? { path: fwd } : {}) };
}

/** One connect through the server to the device's echo service, a round trip, and close. */
async function roundTrip(f: Fixture): Promise<void> {
  const tunnel = await connect({
    server: { host: LOOPBACK, port: f.setup.tlsPort },
    serverName: 'localhost',
    caPem: f.setup.caPem,
    equipmentId: EQUIPMENT_ID,
    password: f.setup.password,
    service: 'echo',
    accept: { host: LOOPBACK, port: 0 },
  });
  try {
    const payload = randomBytes(8).toString('hex');
    const echoed = new Promise<string>((resolve) => tunnel.stream.once('data', (d: Buffer) => resolve(d.toString())));
    tunnel.stream.write(payload);
    if ((await echoed) !== payload) throw new Error('echo mismatch');
  } finally {
    tunnel.stream.destroy();
  }
}

const attaches = (f: Fixture): number => f.server.broker.counters.get('deviceAttachConnections');
const notifications = (f: Fixture): number => f.server.registration.counters.get('notificationsSent');

test('10 sequential requests to one device: one device TLS attach handshake, no UDP notification after the first', async (t) => {
  const f = await fixture(t);
  await roundTrip(f);
  t.is(attaches(f), 1);
  const notifiedForFirst = notifications(f);
  t.true(notifiedForFirst >= 1, 'the first request is notified over UDP (the patent path)');
  await waitUntil(() => f.server.broker.keptDevices === 1, 'the server keeps the device connection');
  for (let i = 1; i < 10; i++) await roundTrip(f);
  t.is(attaches(f), 1, 'one TLS attach connection for 10 requests');
  t.is(notifications(f), notifiedForFirst, 'no UDP notification after the first request');
  t.is(f.server.broker.counters.get('keptWakes'), 9);
  t.is(f.agent.counters.get('keptWakes'), 9);
  await waitUntil(() => f.agent.counters.get('sessionsServed') === 10, 'the device to have served the 10 sessions');
});

test('requests in flight together: each attach connection is kept, and the next burst wakes them all (no new TLS attach)', async (t) => {
  const f = await fixture(t);
  await Promise.all([0, 1, 2, 3].map(() => roundTrip(f)));
  const first = attaches(f);
  t.true(first >= 2, `the first burst attached over ${first} TLS connections at once`);
  await waitUntil(() => f.server.broker.keptDevices === first, 'the server keeps every one of them');
  const wakes = f.server.broker.counters.get('keptWakes');
  await Promise.all(Array.from({ length: first }, () => roundTrip(f)));
  t.is(attaches(f), first, 'no new TLS attach connection for the second burst');
  t.is(f.server.broker.counters.get('keptWakes') - wakes, first, 'each request of the burst woke a kept connection');
});

test('the kept connection cut: the next request is notified over UDP, attaches anew and succeeds', async (t) => {
  const f = await fixture(t, { viaForwarder: true });
  await roundTrip(f);
  await waitUntil(() => f.server.broker.keptDevices === 1, 'the server keeps the device connection');
  const notified = notifications(f);
  f.path!.kill();
  await waitUntil(() => f.server.broker.keptDevices === 0, 'the server forgets the dead connection');
  await roundTrip(f);
  t.is(attaches(f), 2, 'a new attach connection');
  t.true(notifications(f) > notified, 'the request was notified over UDP');
  t.is(f.server.broker.counters.get('keptWakes'), 0);
});

test('a kept connection that went silent: the wake over it is lost, the UDP notification follows and the request succeeds', async (t) => {
  const f = await fixture(t, { viaForwarder: true });
  await roundTrip(f);
  await waitUntil(() => f.server.broker.keptDevices === 1, 'the server keeps the device connection');
  const notified = notifications(f);
  f.path!.freeze();
  await roundTrip(f);
  t.is(f.server.broker.counters.get('keptWakes'), 1, 'the wake went over the silent connection first');
  t.true(notifications(f) > notified, 'then over UDP, after one retry interval');
  t.is(attaches(f), 2, 'the device attached over a new connection');
});

test('server.keep_idle_ms = 0: every request is notified over UDP and attaches anew, as in the patent', async (t) => {
  const f = await fixture(t, { keepIdleMs: 0 });
  for (let i = 0; i < 3; i++) await roundTrip(f);
  t.is(attaches(f), 3);
  t.is(f.server.broker.keptDevices, 0);
  t.is(f.server.broker.counters.get('kept'), 0);
});

test('the device closes its kept connection after its idle time', async (t) => {
  // 1 s, and the server's count of connections it took to keep (not how many it holds now): under
  // load a shorter idle time ran out before the first look, and the spec failed for no fault.
  const f = await fixture(t, { keepIdleMs: 1000, server: { keptDevices: { max: 10, idleMs: 60_000 } } });
  await roundTrip(f);
  await waitUntil(() => f.server.broker.counters.get('kept') === 1, 'the server keeps the device connection');
  await waitUntil(() => f.agent.counters.get('keptClosedIdle') === 1, 'the device closes it when idle', 5000);
  await waitUntil(() => f.server.broker.keptDevices === 0, 'the server sees it closed');
  t.is(f.server.broker.counters.get('keptIdleClosed'), 0, 'closed by the device, not by the server');
});

test('the server closes a kept connection after its own idle limit', async (t) => {
  const f = await fixture(t, { keepIdleMs: 60_000, server: { keptDevices: { max: 10, idleMs: 400 } } });
  await roundTrip(f);
  await waitUntil(() => f.server.broker.counters.get('kept') === 1, 'the server keeps the device connection');
  await waitUntil(() => f.server.broker.counters.get('keptIdleClosed') === 1, 'the server closes it when idle', 5000);
  t.is(f.server.broker.keptDevices, 0);
  await waitUntil(() => f.agent.counters.get('keptClosedByServer') === 1, 'the device sees it closed');
  t.is(f.agent.counters.get('keptClosedIdle'), 0);
  await sleep(50);
  await roundTrip(f);
  t.is(attaches(f), 2, 'the next request attaches anew');
});
