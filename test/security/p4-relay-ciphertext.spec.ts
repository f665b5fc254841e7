/**
 * P4 through the relay: everything the server receives from the client for a relayed session
 * (recorded by a TLS-terminating proxy with the server's own certificate, i.e. exactly the
 * server's view) is the end-to-end channel's ciphertext: the plaintext never appears. With plain
 * legs (issue 15) the same holds on the wire itself, what any on-path observer sees.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { connect } from '../../agent/client/client.js';
import { createAgent } from '../../agent/device/agent.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { loadAgentSettings } from '../../agent/device/settings.js';

import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { createServer as netServer, connect as netConnect } from 'node:net';
import {
  echoService,
  listenTcp,
  LOOPBACK,
  recordingProxy,
  recordingRelay,
  tempDir,
  waitUntil,
  startLoopbackServer,
} from '../helpers/harness.js';

for (const legs of ['TLS', 'plain'] as const)
  test(`P4: a relayed session shows ${legs === 'TLS' ? 'the server' : 'the wire of a plain leg'} only ciphertext`, async (t) => {
    const servicePort = await echoService(t);
    const setup = await createLoopbackSetup({
      dir: await tempDir(t),
      services: { echo: `${LOOPBACK}:${servicePort}` },
      directDialOnly: true,
    });
    const server = await startLoopbackServer(t, setup);
    const agent = createAgent({ identity: await loadIdentity(setup.identityFile), settings: await loadAgentSettings(setup.agentConfig) });
    await agent.start();
    t.teardown(() => agent.stop());
    await waitUntil(() => agent.status().state === 'registered', 'the agent to register');
    // TLS: the server's own view (a TLS-terminating proxy; the client's plain leg fails there and it
    // joins over TLS). Plain: a TCP proxy, what an on-path observer records of the client's leg.
    const proxy = legs === 'TLS' ? await recordingProxy(t, setup, setup.tlsPort) : await recordingTcpProxy(t, setup.tlsPort);

    const tunnel = await connect({
      server: { host: LOOPBACK, port: proxy.port },
      serverName: 'localhost',
      caPem: setup.caPem,
      equipmentId: setup.equipmentId,
      password: setup.password,
      service: 'echo',
      accept: { host: LOOPBACK, port: 0 },
      advertisePort: await freePort(), // closed: the direct dial fails, the relay carries the session
    });
    t.teardown(() => tunnel.stream.destroy());
    t.regex(tunnel.path, /relayed via server/);
    const secret = `PLAINTEXT-${randomBytes(24).toString('hex')}`;
    tunnel.stream.write(secret);
    let echoed = '';
    await new Promise<void>((resolve) => {
      tunnel.stream.on('data', (d: Buffer) => {
        echoed += d.toString();
        if (echoed.length >= secret.length) resolve();
      });
    });
    t.is(echoed, secret);
    t.is(server.relay.counters.get('paired'), 1, 'the session went through the relay');
    t.is(
      server.broker.counters.get('relayLegs'),
      legs === 'TLS' ? 1 : 2,
      'the device joined on a plain leg, and the client too through a TCP proxy',
    );
    const seenByServer = Buffer.concat(proxy.toServer);
    const sentByServer = Buffer.concat(proxy.toClient);
    t.true(seenByServer.length > secret.length);
    t.false(seenByServer.includes(Buffer.from(secret)), 'the server saw the plaintext the client sent');
    t.false(sentByServer.includes(Buffer.from(secret)), 'the server saw the plaintext the device sent back');
  });

/** A plain TCP proxy to the server that records both directions. */
async function recordingTcpProxy(t: Parameters<typeof listenTcp>[0], upstreamPort: number) {
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  const s = netServer((down) => recordingRelay(down, netConnect({ host: LOOPBACK, port: upstreamPort }), toServer, toClient));
  const port = await listenTcp(t, s);
  return { port, toServer, toClient };
}
