/**
 * P4: the direct channel (device -> client, TLS 1.3 with an external PSK derived from the access
 * key and both nonces) can be neither read nor stood in the middle of. The real peer listener
 * (client side) and the real dialer (device side) are used; a TCP relay records the wire.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { connect as netConnect, createServer as createTcpServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { createPeerListener, PEER_COUNTERS, type PeerListener } from '../../agent/client/peer-listener.js';
import { dialClient } from '../../agent/device/dialer.js';
import { connectToServer } from '../../agent/rendezvous/server-tls.js';

import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { deriveAccessKey, deriveRegistrationKey, deriveRequestTagKey, deriveTunnelPsk, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import { createRegistrationMasterKey } from '../../agent/pki/master-key.js';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { DIST, startProgram } from '../../scripts/lib/program.js';
import {
  createServerPki,
  findSecrets,
  LOOPBACK,
  listenTcp,
  recordingRelay,
  tempDir,
  waitUntil,
  type Cleanup,
  type ServerPki,
  startLoopbackServer,
} from '../helpers/harness.js';
import { wakeFor } from '../helpers/wake.js';

const EQUIPMENT_ID = 'P4-DEVICE';
const SERVICE = 'http';

interface Peer {
  readonly listener: PeerListener;
  readonly accessKey: Buffer;
  readonly clientNonce: Buffer;
  /** Sockets handed to the client (the expected entry's resolve). */
  readonly resolved: TLSSocket[];
}

async function peer(t: ExecutionContext, accessKey = randomBytes(32)): Promise<Peer> {
  const listener = createPeerListener({ host: LOOPBACK, port: 0 });
  await listener.start();
  t.teardown(() => listener.stop());
  const clientNonce = randomBytes(NONCE_BYTES);
  const resolved: TLSSocket[] = [];
  const unexpect = listener.expect({
    clientNonce,
    accessKey,
    equipmentId: EQUIPMENT_ID,
    service: SERVICE,
    resolve: (s) => resolved.push(s),
  });
  t.teardown(() => {
    unexpect();
    for (const s of resolved) s.destroy();
  });
  return { listener, accessKey, clientNonce, resolved };
}

interface DialAs {
  readonly accessKey: Buffer;
  readonly clientNonce: Buffer;
  readonly equipmentId?: string;
  readonly service?: string;
  readonly port: number;
}

function dial(d: DialAs): Promise<TLSSocket> {
  return dialClient({
    to: { address: LOOPBACK, port: d.port },
    accessKey: d.accessKey,
    clientNonce: d.clientNonce,
    equipmentId: d.equipmentId ?? EQUIPMENT_ID,
    service: d.service ?? SERVICE,
    // Generous: a loaded CI machine (load ~10 seen) must not turn a slow handshake into a failure.
    timeoutMs: 10_000,
  });
}

/** A dial that must fail at the handshake (not by timing out) and must not reach the client. */
async function assertDialRefused(t: ExecutionContext, p: Peer, d: DialAs, what: string): Promise<void> {
  const before = p.resolved.length;
  const verdicts = (): number => PEER_COUNTERS.reduce((n, k) => n + p.listener.counters.get(k), 0);
  const verdictsBefore = verdicts();
  const err = await t.throwsAsync(dial(d), undefined, `${what}: the handshake must fail`);
  t.not((err as { code?: string } | undefined)?.code, 'PEERLINK_ERR_PEER_TIMEOUT', `${what}: refused, not merely slow`);
  // The listener's own verdict on this connection (accepted, unexpected, failed...): after it, no hand-over can follow.
  await waitUntil(() => verdicts() > verdictsBefore, `${what}: the listener's verdict`);
  t.is(p.resolved.length, before, `${what}: the client must not be handed a connection`);
}

test('P4a: knowing everything the server knows (master key, registration key, nonces) does not complete the handshake', async (t) => {
  const p = await peer(t);
  const port = p.listener.address().port;
  const master = createRegistrationMasterKey();
  const candidates: [string, Buffer][] = [
    ['a random key', randomBytes(32)],
    ['the master key', master],
    ['the registration key', deriveRegistrationKey(master, EQUIPMENT_ID)],
    ['an all-zero key', Buffer.alloc(32)],
  ];
  // The attacker knows the client nonce: it travels in the sealed request the server relays.
  for (const [what, accessKey] of candidates) await assertDialRefused(t, p, { accessKey, clientNonce: p.clientNonce, port }, what);
  t.is(p.listener.counters.get('accepted'), 0);
  t.true(p.listener.counters.get('handshakeFailed') >= candidates.length, 'each attempt failed the handshake at the listener');

  // The failed attempts did not use up the expectation: the real device still gets through.
  const good = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port });
  t.teardown(() => good.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the genuine connection to reach the client', 2000);
});

test('P4b: with the right access key the handshake succeeds (TLS 1.3, PSK, no certificate) and data flows', async (t) => {
  const p = await peer(t);
  const device = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port: p.listener.address().port });
  t.teardown(() => device.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the connection to reach the client', 2000);
  const client = p.resolved[0]!;
  t.is(device.getProtocol(), 'TLSv1.3');
  t.is(client.getProtocol(), 'TLSv1.3');
  t.falsy(device.getPeerCertificate()?.subject, 'no certificate: the PSK is the authentication');
  const got = new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString())));
  device.write('ping');
  t.is(await got, 'ping');
});

test('P4b: the PSK is bound to the device and the service: a dial for another service or device is refused', async (t) => {
  const p = await peer(t);
  const port = p.listener.address().port;
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: p.clientNonce, service: 'ssh', port }, 'another service');
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: p.clientNonce, equipmentId: 'P4-OTHER', port }, 'another device ID');
});

test('P4c: the bytes on the wire of a real tunnel do not contain the plaintext sent through it', async (t) => {
  const p = await peer(t);
  const listenerPort = p.listener.address().port;
  // A TCP relay between the device's dialer and the client's listener, recording both directions.
  const toClient: Buffer[] = [];
  const toDevice: Buffer[] = [];
  const relayPort = await listenTcp(
    t,
    createTcpServer((inbound: Socket) => {
      const outbound = netConnect({ host: LOOPBACK, port: listenerPort });
      recordingRelay(inbound, outbound, toClient, toDevice);
    }),
  );

  const device = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port: relayPort });
  t.teardown(() => device.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the relayed connection to reach the client', 2000);
  const client = p.resolved[0]!;

  const fromDevice = Buffer.from(`DEVICE-SECRET-${randomBytes(24).toString('hex')}-`.repeat(40));
  const fromClient = Buffer.from(`CLIENT-SECRET-${randomBytes(24).toString('hex')}-`.repeat(40));
  const readAll = (s: TLSSocket, n: number): Promise<Buffer> =>
    new Promise((resolve) => {
      const parts: Buffer[] = [];
      let have = 0;
      const onData = (d: Buffer): void => {
        parts.push(d);
        have += d.length;
        if (have >= n) {
          s.off('data', onData);
          resolve(Buffer.concat(parts));
        }
      };
      s.on('data', onData);
    });
  const atClient = readAll(client, fromDevice.length);
  const atDevice = readAll(device, fromClient.length);
  device.write(fromDevice);
  client.write(fromClient);
  t.true((await atClient).equals(fromDevice), 'the client received the device plaintext through the relay');
  t.true((await atDevice).equals(fromClient), 'the device received the client plaintext through the relay');

  const wireToClient = Buffer.concat(toClient);
  const wireToDevice = Buffer.concat(toDevice);
  t.true(wireToClient.length > fromDevice.length && wireToDevice.length > fromClient.length, 'the traffic did pass the relay');
  const wire = Buffer.concat([wireToClient, wireToDevice]);
  // Not the plaintext, nor any 16-byte piece of it (the hex part is random, so a match would be a leak).
  for (const [label, text] of [
    ['device plaintext', fromDevice],
    ['client plaintext', fromClient],
  ] as const) {
    const leaks: number[] = [];
    for (let i = 0; i + 16 <= 80; i += 1) if (wire.includes(text.subarray(14 + i, 14 + i + 16))) leaks.push(i);
    t.false(wire.includes(text), `${label} is on the wire`);
    t.deepEqual(leaks, [], `pieces of the ${label} are on the wire`);
  }
  // Nor the keys: the access key, or the session PSK for any device nonce (it is never sent).
  t.deepEqual(findSecrets(wire, { keys: { accessKey: p.accessKey } }), []);
  const identity = /pl1:([0-9a-f]{32}):([0-9a-f]{32})/.exec(wire.toString('latin1'));
  t.truthy(identity, 'the PSK identity (nonces only) is visible on the wire, as designed');
  if (identity) {
    const psk = deriveTunnelPsk(p.accessKey, p.clientNonce, Buffer.from(identity[2]!, 'hex'), EQUIPMENT_ID, SERVICE);
    t.deepEqual(findSecrets(wire, { keys: { tunnelPsk: psk } }), [], 'the session PSK is not on the wire');
  }
});

test('P4d: a PSK identity for a nonce the client does not expect is refused, also with the right key', async (t) => {
  const p = await peer(t);
  const port = p.listener.address().port;
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: randomBytes(NONCE_BYTES), port }, 'unexpected nonce');
  t.true(p.listener.counters.get('unexpected') >= 1, 'counted as unexpected');

  // Single use: once the expected connection has arrived, the same nonce is refused.
  const first = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port });
  t.teardown(() => first.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the expected connection', 2000);
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: p.clientNonce, port }, 'second use of the nonce');
  t.is(p.listener.counters.get('accepted'), 1);
});

// ---------------------------------------------------------------------------------------------
// P4e: a certificate instead of the PSK.
//
// Regression for a bug found and fixed in agent/device/dialer.ts: a TLS 1.3 peer may decline the
// PSK and authenticate with a certificate. The dialer used to verify such a certificate against
// Node's default root store with the name check off, so anyone at the dialled address holding any
// publicly trusted certificate got the appliance's service without the password. The dialer now
// refuses any handshake in which the peer presented a certificate. The tests simulate "publicly
// trusted" by adding a throwaway CA through NODE_EXTRA_CA_CERTS, which extends the same store.
// ---------------------------------------------------------------------------------------------

/** A TLS 1.3 server that authenticates with a certificate (no PSK), recording what it receives. */
async function certificateServer(t: Cleanup, pki: Pick<ServerPki, 'certPem' | 'keyPem'>) {
  let secured = 0;
  const received: Buffer[] = [];
  const s = createTlsServer({ cert: pki.certPem, key: pki.keyPem, minVersion: 'TLSv1.3' }, (sock) => {
    secured++;
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => received.push(Buffer.from(d)));
    sock.write('GET /admin HTTP/1.0\r\n\r\n');
  });
  s.on('tlsClientError', () => undefined);
  // TCP connections (handshaken or not) and how many have closed: when all have, nothing more can arrive.
  let connections = 0;
  let closed = 0;
  s.on('connection', (raw: Socket) => {
    connections++;
    raw.once('close', () => closed++);
  });
  const port = await listenTcp(t, s);
  return {
    port,
    secured: () => secured,
    received: () => Buffer.concat(received),
    connections: () => connections,
    allClosed: () => connections > 0 && closed === connections,
  };
}

/** dialClient run in a child process whose default trust store includes `extraCaFile`. */
function dialInChild(port: number, extraCaFile: string): Promise<string> {
  const dialer = pathToFileURL(join(DIST, 'agent', 'device', 'dialer.js')).href;
  const code = `
    import { dialClient } from ${JSON.stringify(dialer)};
    import { randomBytes } from 'node:crypto';
    try {
      const s = await dialClient({ to: { address: '127.0.0.1', port: ${port} }, accessKey: randomBytes(32),
        clientNonce: randomBytes(16), equipmentId: 'P4-DEVICE', service: 'http', timeoutMs: 3000 });
      process.stdout.write('RESOLVED ' + s.getProtocol());
      s.destroy();
    } catch (err) {
      process.stdout.write('REJECTED ' + (err.code ?? err.message));
    }`;
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      ['--input-type=module', '-e', code],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: extraCaFile }, timeout: 10_000 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    ),
  );
}

test('P4e control: a certificate-based server whose certificate no trusted CA signed is refused by the dialer', async (t) => {
  const attacker = await certificateServer(t, createServerPki(['attacker.example', LOOPBACK]));
  const err = await t.throwsAsync(dial({ accessKey: randomBytes(32), clientNonce: randomBytes(NONCE_BYTES), port: attacker.port }));
  t.truthy(err);
  t.is(attacker.received().length, 0);
});

test('P4e: the dialer refuses a certificate (from a trusted CA, any name) in place of the PSK', async (t) => {
  const dir = await tempDir(t, 'peerlink-p4e-');
  const publicCa = createServerPki(['attacker.example']);
  const rootsFile = join(dir, 'public-roots.pem');
  await writeFile(rootsFile, publicCa.caPem);
  const attacker = await certificateServer(t, publicCa);
  const outcome = await dialInChild(attacker.port, rootsFile);
  // Before the fix: "RESOLVED TLSv1.3", the dial succeeded without the access key. (Whether the attacker's
  // side sees the handshake complete before the device hangs up is not asserted.)
  t.true(outcome.startsWith('REJECTED'), outcome);
});

test('P4e end to end: the real agent does not join its service to an attacker holding a trusted certificate', async (t) => {
  t.timeout(30_000);
  const dir = await tempDir(t, 'peerlink-p4e-');
  // The appliance's service: greets with a secret banner, then echoes.
  const banner = `APPLIANCE-ADMIN-${randomBytes(8).toString('hex')}\n`;
  const servicePort = await listenTcp(
    t,
    createTcpServer((s) => {
      s.on('error', () => undefined);
      s.write(banner);
      s.pipe(s);
    }),
  );
  const setup = await createLoopbackSetup({ dir, equipmentId: 'P4E-DEVICE', services: { http: `${LOOPBACK}:${servicePort}` } });
  // A throwaway CA standing in for any public CA in the default store, and the attacker's cert.
  const publicCa = createServerPki(['attacker.example']);
  const rootsFile = join(dir, 'public-roots.pem');
  await writeFile(rootsFile, publicCa.caPem);
  const attacker = await certificateServer(t, publicCa);

  await startLoopbackServer(t, setup);
  const agent = startProgram('agent', ['--config', setup.agentConfig], { env: { ...process.env, NODE_EXTRA_CA_CERTS: rootsFile } });
  t.teardown(() => agent.stop(2000));
  await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));

  // A genuine request from the legitimate user (who knows the password). The device's dial to
  // the client's address is answered by the attacker: here its port stands for that address
  // (a malicious server would put the attacker's address in FORWARD_REQUEST instead).
  const tagKey = deriveRequestTagKey(await deriveAccessKey(setup.password, setup.equipmentId));
  const tls = await connectToServer({ host: LOOPBACK, port: setup.tlsPort, serverName: 'localhost', caPem: setup.caPem });
  const channel = new FrameChannel(tls);
  t.teardown(() => tls.destroy());
  const hello = await channel.next(5000);
  if (hello.type !== FrameType.HELLO) return t.fail('no HELLO');
  const sealed = sealRequest(
    {
      clientNonce: randomBytes(NONCE_BYTES),
      timestampMs: hello.serverTimeMs,
      equipmentId: setup.equipmentId,
      service: 'http',
      advertisedPort: attacker.port,
    },
    tagKey,
  );
  channel.send({
    type: FrameType.CONNECT_REQUEST,
    equipmentId: setup.equipmentId,
    advertisedPort: attacker.port,
    wake: wakeFor(await deriveAccessKey(setup.password, setup.equipmentId), setup.equipmentId, sealed),
    sealedRequest: sealed,
  });
  let result = await channel.next(15_000);
  // An accepted request is preceded by the server's relay offer (and plan) and path candidates.
  while (result.type === FrameType.RELAY_OFFER || result.type === FrameType.RELAY_PLAN || result.type === FrameType.CANDIDATES)
    result = await channel.next(15_000);
  t.true(result.type === FrameType.CONNECT_RESULT && result.status === Status.OK, 'the device authorised the genuine request');
  // The device's dial reached the attacker and the device hung up: no byte can come after that.
  await waitUntil(() => attacker.allClosed(), "the device's connection to the attacker to end", 20_000);
  // Before the fix the attacker read the service's banner and the echo of its own "GET /admin":
  // full two-way access to the appliance's service without the password.
  t.false(attacker.received().includes(Buffer.from(banner)), "the attacker received the appliance service's bytes");
  t.is(attacker.received().length, 0, 'the attacker received bytes from the device');
});
