/**
 * P2: the rendezvous server never holds the password or the access key. It is checked
 *  - on the wire: the CONNECT_REQUEST a real client sends, recorded by a fake TLS server with
 *    the real certificate, and everything a real client sends in a full connect, recorded in
 *    plaintext by a TLS-terminating proxy in front of the real server;
 *  - in the server's own logs (debug level) during that connect;
 *  - in what the server loads (settings and secrets) and in the server's code (static);
 *  - cryptographically: from the recorded request plus all the server knows, a modified request
 *    cannot be made that the device accepts.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer as createTlsServer } from 'node:tls';
import { connect, type Tunnel } from '../../agent/client/client.js';
import { createAgent } from '../../agent/device/agent.js';
import { createAuthorizer } from '../../agent/device/authorizer.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { ReplayCache } from '../../agent/common/replay-cache.js';
import { loadAgentSettings } from '../../agent/device/settings.js';

import { loadServerSecrets, loadServerSettings } from '../../agent/server/settings.js';
import { ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';
import { FrameDecoder } from '../../agent/protocol/frame-decoder.js';
import { encodeFrame, FrameType, type Frame } from '../../agent/protocol/frames.js';
import { deriveAccessKey, deriveRegistrationKey, deriveRequestTagKey, KEY_BYTES, mac } from '../../agent/protocol/keys.js';
import { parseRequest, sealRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import { createLoopbackSetup, type LoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import {
  echoService,
  findSecrets,
  listenTcp,
  LOOPBACK,
  memoryLogger,
  recordingProxy,
  tempDir,
  waitUntil,
  type Secrets,
  startLoopbackServer,
} from '../helpers/harness.js';

const EQUIPMENT_ID = 'P2-DEVICE';
const here = dirname(fileURLToPath(import.meta.url));
/** dist/agent/server, the compiled server (this file is dist/test/security/*.spec.js). */
const SERVER_CODE_DIR = join(here, '..', '..', 'agent', 'server');

interface Fixture {
  readonly setup: LoopbackSetup;
  readonly accessKey: Buffer;
  readonly secrets: Secrets;
}

async function fixture(t: ExecutionContext, servicePort = 9): Promise<Fixture> {
  const dir = await tempDir(t, 'peerlink-p2-');
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { http: `${LOOPBACK}:${servicePort}` } });
  const accessKey = await deriveAccessKey(setup.password, EQUIPMENT_ID);
  const secrets: Secrets = {
    passwords: { password: setup.password },
    keys: { accessKey, requestTagKey: deriveRequestTagKey(accessKey) },
  };
  return { setup, accessKey, secrets };
}

/**
 * A fake rendezvous server with the real certificate: says HELLO, records every plaintext byte
 * the client sends, and answers the first CONNECT_REQUEST with UNKNOWN_DEVICE.
 */
async function recordingFakeServer(t: ExecutionContext, setup: LoopbackSetup): Promise<{ port: number; bytes: Buffer[]; frames: Frame[] }> {
  const bytes: Buffer[] = [];
  const frames: Frame[] = [];
  const s = createTlsServer({ cert: setup.certPem, key: setup.keyPem }, (sock) => {
    sock.on('error', () => undefined);
    const decoder = new FrameDecoder();
    sock.on('data', (d: Buffer) => {
      bytes.push(Buffer.from(d));
      for (const f of decoder.push(d)) {
        frames.push(f);
        if (f.type === FrameType.CONNECT_REQUEST)
          sock.write(encodeFrame({ type: FrameType.CONNECT_RESULT, status: Status.UNKNOWN_DEVICE, detail: 'recorded' }));
      }
    });
    sock.write(encodeFrame({ type: FrameType.HELLO, serverTimeMs: Date.now() }));
  });
  const port = await listenTcp(t, s);
  return { port, bytes, frames };
}

test('P2: the CONNECT_REQUEST a real client sends carries neither the password, nor the access key, nor the tag key', async (t) => {
  const { setup, accessKey, secrets } = await fixture(t);
  const fake = await recordingFakeServer(t, setup);
  const err = await t.throwsAsync(
    connect({
      server: { host: LOOPBACK, port: fake.port },
      serverName: 'localhost',
      caPem: setup.caPem,
      equipmentId: EQUIPMENT_ID,
      password: setup.password,
      service: 'http',
      accept: { host: LOOPBACK, port: 0 },
    }),
  );
  t.true(isPeerlinkError(err, ErrorCodes.UNKNOWN_DEVICE), 'the client got our answer');

  const req = fake.frames.find((f) => f.type === FrameType.CONNECT_REQUEST);
  t.truthy(req, 'a CONNECT_REQUEST was recorded');
  if (req?.type !== FrameType.CONNECT_REQUEST) return;
  // Control: what we recorded is the real request, sealed under the real access key.
  const parsed = parseRequest(req.sealedRequest);
  t.is(parsed.request.equipmentId, EQUIPMENT_ID);
  t.true(mac(deriveRequestTagKey(accessKey), [parsed.signed], KEY_BYTES).equals(parsed.tag), 'the request is tagged under the access key');

  const all = Buffer.concat(fake.bytes);
  t.true(all.length >= req.sealedRequest.length);
  t.deepEqual(findSecrets(all, secrets), [], 'secrets found in the bytes the server receives');
});

test('P2: in a full connect, no byte the server receives from the client, and no server log line, holds a secret', async (t) => {
  const servicePort = await echoService(t);
  const { setup, secrets } = await fixture(t, servicePort);
  const serverLog = memoryLogger('peerlink-server', 'debug');
  await startLoopbackServer(t, setup, {
    logger: serverLog.logger,
  });
  const agent = createAgent({ identity: await loadIdentity(setup.identityFile), settings: await loadAgentSettings(setup.agentConfig) });
  await agent.start();
  t.teardown(() => agent.stop());
  await waitUntil(() => agent.status().state === 'registered', 'the agent to register');

  const proxy = await recordingProxy(t, setup, setup.tlsPort);
  const tunnel: Tunnel = await connect({
    server: { host: LOOPBACK, port: proxy.port },
    serverName: 'localhost',
    caPem: setup.caPem,
    equipmentId: EQUIPMENT_ID,
    password: setup.password,
    service: 'http',
    accept: { host: LOOPBACK, port: 0 },
  });
  t.teardown(() => tunnel.stream.destroy());
  const payload = `through the tunnel ${randomBytes(8).toString('hex')}`;
  const echoed = new Promise<string>((resolve) => tunnel.stream.once('data', (d: Buffer) => resolve(d.toString())));
  tunnel.stream.write(payload);
  t.is(await echoed, payload, 'the connect really worked end to end');

  const seen = Buffer.concat(proxy.toServer);
  t.true(seen.length > 0 && proxy.toClient.length > 0, 'the proxy did carry the conversation');
  t.deepEqual(findSecrets(seen, secrets), [], 'secrets in what the client sent the server');
  t.deepEqual(findSecrets(Buffer.concat(proxy.toClient), secrets), [], 'secrets in what the server sent the client');
  t.true(
    serverLog.lines.some((l) => l.includes('"level":20')),
    'the server did log at debug level',
  );
  t.deepEqual(findSecrets(serverLog.lines.join(''), secrets), [], 'secrets in the server log');
});

test('P2: the server loads only its certificate, its TLS key and the master key; none is or yields the access key', async (t) => {
  const { setup, accessKey, secrets } = await fixture(t);
  const settings = await loadServerSettings(setup.serverConfig);
  const loaded = await loadServerSecrets(settings);
  t.deepEqual(Object.keys(loaded).sort(), ['certPem', 'keyPem', 'masterKey']);
  t.true(loaded.masterKey.equals(setup.masterKey));
  // Everything the server process has from its configuration, in one haystack.
  const files = ['server.toml', 'server.pem', 'server.key', 'registration-master.key'];
  const fileText = (await Promise.all(files.map((f) => readFile(join(setup.dir, f))))).map((b) => b.toString('latin1')).join('\n');
  const haystack = [fileText, JSON.stringify(settings), loaded.certPem, loaded.keyPem, loaded.masterKey.toString('base64')].join('\n');
  t.deepEqual(findSecrets(haystack, secrets), []);
  // And what the server derives from the master key is unrelated to the access key.
  const registrationKey = deriveRegistrationKey(loaded.masterKey, EQUIPMENT_ID);
  t.false(registrationKey.equals(accessKey));
  t.false(deriveRequestTagKey(registrationKey).equals(deriveRequestTagKey(accessKey)));
});

test('P2 (static): the server code never derives or checks the access-key family of keys', async (t) => {
  const files = (await readdir(SERVER_CODE_DIR)).filter((f) => f.endsWith('.js'));
  t.true(
    files.includes('connection-broker.js') && files.includes('registration-endpoint.js'),
    `compiled server code in ${SERVER_CODE_DIR}`,
  );
  for (const f of files) {
    // Code only: comments may well say "the server never sees the access key".
    const code = (await readFile(join(SERVER_CODE_DIR, f), 'utf8')).replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const name of [
      'deriveAccessKey',
      'deriveRequestTagKey',
      'deriveTunnelPsk',
      'verifyRequestTag',
      'parseRequest',
      'normalizePassword',
      'accessKey',
    ]) {
      t.false(code.includes(name), `${f} mentions ${name}`);
    }
  }
});

test('P2: with everything the server knows, a recorded request cannot be altered into one the device accepts', async (t) => {
  const { setup, accessKey } = await fixture(t);
  const fake = await recordingFakeServer(t, setup);
  await t.throwsAsync(
    connect({
      server: { host: LOOPBACK, port: fake.port },
      serverName: 'localhost',
      caPem: setup.caPem,
      equipmentId: EQUIPMENT_ID,
      password: setup.password,
      service: 'http',
      accept: { host: LOOPBACK, port: 0 },
    }),
  );
  const frame = fake.frames.find((f) => f.type === FrameType.CONNECT_REQUEST);
  if (frame?.type !== FrameType.CONNECT_REQUEST) return t.fail('no CONNECT_REQUEST recorded');
  const recorded = frame.sealedRequest;
  const original = parseRequest(recorded).request;

  // The device's real check, with the real access key; both services allowed, loopback allowed.
  const decide = (sealed: Buffer) =>
    createAuthorizer({
      equipmentId: EQUIPMENT_ID,
      accessKey,
      freshnessMs: 30_000,
      replayCache: new ReplayCache(),
      services: () =>
        new Map([
          ['http', { host: LOOPBACK, port: 1 }],
          ['admin', { host: LOOPBACK, port: 2 }],
        ]),
      dialPolicy: () => ({ allowLoopback: true, allowLinkLocal: false, allowPrivate: false }),
    })(
      { client: { address: LOOPBACK, port: 40000 }, advertisedPort: parseRequest(sealed).request.advertisedPort, sealedRequest: sealed },
      original.timestampMs,
      LOOPBACK,
    );

  t.is(decide(recorded).status, Status.OK, 'control: the recorded request itself is accepted');

  const master = setup.masterKey;
  const registrationKey = deriveRegistrationKey(master, EQUIPMENT_ID);
  const serverKeys: [string, Buffer][] = [
    ['registration key', registrationKey],
    ['master key', master],
    ['tag key derived from the registration key', deriveRequestTagKey(registrationKey)],
    ['tag key derived from the master key', deriveRequestTagKey(master)],
  ];
  const modified = { ...original, service: 'admin' };
  for (const [what, key] of serverKeys) {
    t.is(decide(sealRequest(modified, key)).status, Status.AUTH_FAILED, `service changed, re-tagged with the ${what}`);
    t.is(
      decide(sealRequest({ ...original, advertisedPort: 4444 }, key)).status,
      Status.AUTH_FAILED,
      `port changed, re-tagged with the ${what}`,
    );
  }
  // Keeping the original tag on an altered body fails too.
  const origTag = recorded.subarray(recorded.length - KEY_BYTES);
  const body = sealRequest(modified, randomBytes(32));
  const spliced = Buffer.concat([body.subarray(0, body.length - KEY_BYTES), origTag]);
  t.is(decide(spliced).status, Status.AUTH_FAILED, 'service changed, original tag kept');
});
