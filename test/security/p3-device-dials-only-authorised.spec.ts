/**
 * P3: the device dials out only for an authorised request: valid tag under its access key,
 * fresh, never seen before, for a service in its allow-list, to an address its dial policy
 * allows. Set-up: a real in-process server and agent, a fake client that opens TLS to the
 * server and sends a CONNECT_REQUEST with a request it sealed itself, and a plain TCP listener
 * standing in for the client's accept port, which counts the device's connection attempts.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer } from 'node:net';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { createAgent, type Agent } from '../../agent/device/agent.js';
import { loadIdentity, type DeviceIdentity } from '../../agent/device/identity.js';
import { connectToServer } from '../../agent/device/server-channel.js';
import { loadAgentSettings } from '../../agent/device/settings.js';
import { createRendezvousServer } from '../../agent/server/server.js';
import { ErrorCodes } from '../../agent/common/errors.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { deriveRegistrationKey, deriveRequestTagKey, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { Status, STATUS_ERROR, type StatusValue } from '../../agent/protocol/status.js';
import { echoService, LOOPBACK, listenTcp, Scope, sleep, tempDir, waitUntil, type Cleanup } from './lib/helpers.js';

const EQUIPMENT_ID = 'P3-DEVICE';
const SERVICE = 'svc';
/** How long to keep watching for a dial after a refusal. The device would dial right after its verdict. */
const QUIET_MS = 300;

/** A real server and agent on loopback, shared by the tests (each test has its own accept port). */
interface World {
  readonly agent: Agent;
  readonly identity: DeviceIdentity;
  readonly caPem: string;
  readonly tlsPort: number;
  readonly masterKey: Buffer;
}

/** The stand-in for a client's accept port: counts the device's connection attempts. */
interface Acceptor {
  readonly port: number;
  dials(): number;
}

async function world(scope: Cleanup, opts: { allowLoopback?: boolean } = {}): Promise<World> {
  const dir = await tempDir(scope, 'peerlink-p3-');
  const servicePort = await echoService(scope);
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { [SERVICE]: `${LOOPBACK}:${servicePort}` } });
  if (opts.allowLoopback === false) {
    const text = await readFile(setup.agentConfig, 'utf8');
    if (!text.includes('allow_loopback = true')) throw new Error('unexpected agent settings layout');
    await writeFile(setup.agentConfig, text.replace('allow_loopback = true', 'allow_loopback = false'));
  }
  const settings = await loadAgentSettings(setup.agentConfig);
  if (settings.dial.allowLoopback !== (opts.allowLoopback ?? true)) throw new Error('dial.allow_loopback not applied');
  const identity = await loadIdentity(setup.identityFile);

  const server = createRendezvousServer({
    udpHost: LOOPBACK, udpPort: setup.udpPort, tlsHost: LOOPBACK, tlsPort: setup.tlsPort,
    certPem: setup.certPem, keyPem: setup.keyPem, masterKey: setup.masterKey,
  });
  await server.start();
  scope.teardown(() => server.stop());
  // Short dial timeout: the stand-in acceptor does not speak TLS, so a dial ends in a failed handshake.
  const agent = createAgent({ identity, settings: { ...settings, dial: { ...settings.dial, connectTimeoutMs: 1000 } } });
  await agent.start();
  scope.teardown(() => agent.stop());
  await waitUntil(() => agent.status().state === 'registered', 'the agent to register', 5000);
  return { agent, identity, caPem: setup.caPem, tlsPort: setup.tlsPort, masterKey: setup.masterKey };
}

async function acceptor(t: Cleanup): Promise<Acceptor> {
  let dials = 0;
  const port = await listenTcp(
    t,
    createTcpServer((sock) => {
      dials++;
      sock.on('error', () => undefined);
      sock.destroy();
    }),
  );
  return { port, dials: () => dials };
}

const scope = new Scope();
let worlds: Promise<{ open: World; noLoopback: World }>;

test.before(() => {
  // Both worlds start in parallel; each test awaits the one it needs.
  worlds = (async () => {
    const [open, noLoopback] = await Promise.all([world(scope), world(scope, { allowLoopback: false })]);
    return { open, noLoopback };
  })();
  worlds.catch(() => undefined);
});
test.after.always(() => scope.run());

interface RequestSpec {
  readonly tagKey?: Buffer;
  readonly service?: string;
  readonly equipmentId?: string;
  /** Subtracted from the server time from HELLO. */
  readonly ageMs?: number;
}

/**
 * One fake-client conversation: TLS to the server (CA-checked), HELLO, CONNECT_REQUEST naming
 * `acc.port` with `sealed` (or a request sealed from the HELLO's server time), then the
 * CONNECT_RESULT's status.
 */
async function request(w: World, acc: Acceptor, build: Buffer | RequestSpec): Promise<{ status: StatusValue; sealed: Buffer }> {
  const tls = await connectToServer({ host: LOOPBACK, port: w.tlsPort, serverName: 'localhost', caPem: w.caPem });
  const channel = new FrameChannel(tls);
  try {
    const hello = await channel.next(5000);
    if (hello.type !== FrameType.HELLO) throw new Error('expected HELLO');
    let sealed: Buffer;
    if (Buffer.isBuffer(build)) sealed = build;
    else {
      sealed = sealRequest(
        {
          clientNonce: randomBytes(NONCE_BYTES),
          timestampMs: hello.serverTimeMs - (build.ageMs ?? 0),
          equipmentId: build.equipmentId ?? EQUIPMENT_ID,
          service: build.service ?? SERVICE,
          advertisedPort: acc.port,
        },
        build.tagKey ?? deriveRequestTagKey(w.identity.accessKey),
      );
    }
    channel.send({ type: FrameType.CONNECT_REQUEST, equipmentId: EQUIPMENT_ID, advertisedPort: acc.port, sealedRequest: sealed });
    let result = await channel.next(15_000);
    // An accepted request is preceded by the server's relay offer and path candidates.
    while (result.type === FrameType.RELAY_OFFER || result.type === FrameType.CANDIDATES) result = await channel.next(15_000);
    if (result.type !== FrameType.CONNECT_RESULT) throw new Error(`expected CONNECT_RESULT, got frame type ${result.type}`);
    return { status: result.status, sealed };
  } finally {
    channel.close();
    tls.destroy();
  }
}

/** Assert the request is refused with `status` and that no dial follows. */
async function assertRefusedWithoutDial(
  t: ExecutionContext,
  w: World,
  acc: Acceptor,
  build: Buffer | RequestSpec,
  status: StatusValue,
  what: string,
): Promise<void> {
  const before = acc.dials();
  const r = await request(w, acc, build);
  t.is(r.status, status, `${what}: status`);
  await sleep(QUIET_MS);
  t.is(acc.dials(), before, `${what}: the device must not dial`);
}

test('P3 positive control: a valid request produces exactly one connection to the accept port', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const r = await request(w, acc, {});
  t.is(r.status, Status.OK);
  await waitUntil(() => acc.dials() === 1, 'the device to dial', 3000);
  await sleep(QUIET_MS);
  t.is(acc.dials(), 1, 'exactly one connection');
});

test('P3: a request sealed with a wrong key is refused (AUTH_FAILED) and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const candidates: [string, Buffer][] = [
    ['a random access key', deriveRequestTagKey(randomBytes(32))],
    // What the server could try: all it knows is the master key and the registration key.
    ['the registration key as access key', deriveRequestTagKey(deriveRegistrationKey(w.masterKey, EQUIPMENT_ID))],
    ['the registration key as tag key', deriveRegistrationKey(w.masterKey, EQUIPMENT_ID)],
    ['the master key as tag key', w.masterKey],
    ['the access key itself as tag key (wrong derivation)', w.identity.accessKey],
  ];
  for (const [what, tagKey] of candidates) await assertRefusedWithoutDial(t, w, acc, { tagKey }, Status.AUTH_FAILED, what);
  t.is(STATUS_ERROR[Status.AUTH_FAILED], ErrorCodes.AUTH_FAILED);
});

test('P3: a stale request (60 s old) is refused (REQUEST_EXPIRED) and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  await assertRefusedWithoutDial(t, w, acc, { ageMs: 60_000 }, Status.REQUEST_EXPIRED, '60 s old');
  await assertRefusedWithoutDial(t, w, acc, { ageMs: -60_000 }, Status.REQUEST_EXPIRED, '60 s in the future');
});

test('P3: a replayed request (same sealed bytes) is refused (REQUEST_REPLAYED) and produces no second dial', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const first = await request(w, acc, {});
  t.is(first.status, Status.OK);
  await waitUntil(() => acc.dials() === 1, 'the first dial', 3000);
  await assertRefusedWithoutDial(t, w, acc, first.sealed, Status.REQUEST_REPLAYED, 'replay of the served request');
  await assertRefusedWithoutDial(t, w, acc, first.sealed, Status.REQUEST_REPLAYED, 'second replay');
  t.is(acc.dials(), 1);
});

test('P3: a request for a service not in the allow-list is refused (SERVICE_REFUSED) and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  for (const service of ['ssh', 'admin', 'svc2']) {
    await assertRefusedWithoutDial(t, w, acc, { service }, Status.SERVICE_REFUSED, `service ${service}`);
  }
});

test('P3: a request sealed for another device is refused and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const r = await request(w, acc, { equipmentId: 'P3-OTHER-DEVICE' });
  t.not(r.status, Status.OK);
  await sleep(QUIET_MS);
  t.is(acc.dials(), 0);
});

test('P3: with dial.allow_loopback = false a valid request from 127.0.0.1 is refused (DIAL_REFUSED), no dial', async (t) => {
  const w = (await worlds).noLoopback;
  const acc = await acceptor(t);
  await assertRefusedWithoutDial(t, w, acc, {}, Status.DIAL_REFUSED, 'loopback client');
  t.is(STATUS_ERROR[Status.DIAL_REFUSED], ErrorCodes.DIAL_REFUSED);
});
