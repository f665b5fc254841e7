/**
 * A real in-process server and agent on loopback, and a fake client that opens TLS to the server
 * and sends a CONNECT_REQUEST with a request it sealed itself; a plain TCP listener stands in for
 * the client's accept port and counts the device's connection attempts (P3, P12).
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer } from 'node:net';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { createAgent, type Agent } from '../../agent/device/agent.js';
import { loadIdentity } from '../../agent/device/identity.js';
import type { DeviceIdentity } from '../../agent/protocol/identity-file.js';
import { connectToServer } from '../../agent/rendezvous/server-tls.js';
import { loadAgentSettings, type AgentSettings } from '../../agent/device/settings.js';
import { createRendezvousServer, type RendezvousServer, type ServerLimits } from '../../agent/server/server.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { deriveRequestTagKey, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { sealRequest } from '../../agent/protocol/request.js';
import type { StatusValue } from '../../agent/protocol/status.js';
import { echoService, LOOPBACK, listenTcp, tempDir, waitUntil, type Cleanup } from './harness.js';
import { wakeFor } from './wake.js';
import type { Wake } from '../../agent/protocol/wake.js';

export const EQUIPMENT_ID = 'P3-DEVICE';
export const SERVICE = 'svc';
/** A real server and agent on loopback, shared by the tests (each test has its own accept port). */
export interface World {
  readonly agent: Agent;
  readonly identity: DeviceIdentity;
  readonly caPem: string;
  readonly tlsPort: number;
  readonly masterKey: Buffer;
  /** The settings the agent runs with (a test may start another agent on them). */
  readonly settings: AgentSettings;
  readonly server: RendezvousServer;
}

/** The stand-in for a client's accept port: counts the device's connection attempts. */
export interface Acceptor {
  readonly port: number;
  dials(): number;
}

export interface WorldOptions {
  readonly allowLoopback?: boolean;
  readonly stateDir?: string;
  /** The server's limits; default: the per-source limit of failed authentications off (every spec request comes from 127.0.0.1). */
  readonly limits?: Partial<ServerLimits>;
}

export async function world(scope: Cleanup, opts: WorldOptions = {}): Promise<World> {
  const dir = await tempDir(scope, 'peerlink-p3-');
  const servicePort = await echoService(scope);
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { [SERVICE]: `${LOOPBACK}:${servicePort}` } });
  if (opts.allowLoopback === false) {
    const text = await readFile(setup.agentConfig, 'utf8');
    if (!text.includes('allow_loopback = true')) throw new Error('unexpected agent settings layout');
    await writeFile(setup.agentConfig, text.replace('allow_loopback = true', 'allow_loopback = false'));
  }
  const loaded = await loadAgentSettings(setup.agentConfig);
  const settings = opts.stateDir ? { ...loaded, stateDir: opts.stateDir } : loaded;
  if (settings.dial.allowLoopback !== (opts.allowLoopback ?? true)) throw new Error('dial.allow_loopback not applied');
  const identity = await loadIdentity(setup.identityFile);

  const server = createRendezvousServer({
    udpHost: LOOPBACK,
    udpPort: setup.udpPort,
    tlsHost: LOOPBACK,
    tlsPort: setup.tlsPort,
    certPem: setup.certPem,
    keyPem: setup.keyPem,
    masterKey: setup.masterKey,
    // Every spec request comes from 127.0.0.1, many with a wrong key on purpose.
    limits: opts.limits ?? { authFailuresPerSource: { perSecond: 0, burst: 1 } },
  });
  await server.start();
  scope.teardown(() => server.stop());
  // Short dial timeout: the stand-in acceptor does not speak TLS, so a dial ends in a failed handshake.
  const agentSettings = { ...settings, dial: { ...settings.dial, connectTimeoutMs: 1000 } };
  const agent = createAgent({ identity, settings: agentSettings });
  await agent.start();
  scope.teardown(() => agent.stop());
  await waitUntil(() => agent.status().state === 'registered', 'the agent to register', 5000);
  return { agent, identity, caPem: setup.caPem, tlsPort: setup.tlsPort, masterKey: setup.masterKey, settings: agentSettings, server };
}

export async function acceptor(t: Cleanup): Promise<Acceptor> {
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

export interface RequestSpec {
  /** The wake proof to send; default: one made with the same key as the request. */
  readonly wake?: Wake;
  readonly tagKey?: Buffer;
  readonly service?: string;
  readonly equipmentId?: string;
  /** Subtracted from the server time from HELLO. */
  readonly ageMs?: number;
}

/** Where a fake client sends its request: a server anywhere (loopback, the NAT lab's WAN) and a device ID there. */
export interface RequestTarget {
  readonly host: string;
  readonly tlsPort: number;
  /** Name expected in the server certificate. */
  readonly serverName: string;
  readonly caPem: string;
  readonly equipmentId: string;
  /** The device's access key: requests are sealed and woken with it unless the spec gives a key and a wake. */
  readonly accessKey?: Buffer;
}

/**
 * One fake-client conversation: TLS to the server (CA-checked), HELLO, CONNECT_REQUEST naming
 * `acc.port` with `sealed` (or a request sealed from the HELLO's server time), then the
 * CONNECT_RESULT's status.
 */
export function request(
  w: World,
  acc: Acceptor,
  build: Buffer | RequestSpec,
  from?: string,
): Promise<{ status: StatusValue; sealed: Buffer }> {
  const target = {
    host: LOOPBACK,
    tlsPort: w.tlsPort,
    serverName: 'localhost',
    caPem: w.caPem,
    equipmentId: EQUIPMENT_ID,
    accessKey: w.identity.accessKey,
  };
  return requestAt(target, acc.port, build, from);
}

/** The same conversation with any server, from local address `from` if given. */
export async function requestAt(
  target: RequestTarget,
  advertisedPort: number,
  build: Buffer | RequestSpec,
  from?: string,
): Promise<{ status: StatusValue; sealed: Buffer }> {
  const keyOf = (given: Buffer | undefined): Buffer => {
    const key = given ?? target.accessKey;
    if (!key) throw new Error("fake client: no key to seal or wake the request with (give tagKey and wake, or the target's accessKey)");
    return key;
  };
  const tls = await connectToServer({
    host: target.host,
    port: target.tlsPort,
    serverName: target.serverName,
    caPem: target.caPem,
    ...(from ? { localAddress: from } : {}),
  });
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
          equipmentId: build.equipmentId ?? target.equipmentId,
          service: build.service ?? SERVICE,
          advertisedPort,
        },
        build.tagKey ?? deriveRequestTagKey(keyOf(undefined)),
      );
    }
    // The wake a client with the spec's key sends with it (a replayed request: the same wake again).
    const wake =
      Buffer.isBuffer(build) || !build.wake
        ? wakeFor(keyOf(Buffer.isBuffer(build) ? undefined : build.tagKey), target.equipmentId, sealed)
        : build.wake;
    channel.send({ type: FrameType.CONNECT_REQUEST, equipmentId: target.equipmentId, advertisedPort, wake, sealedRequest: sealed });
    let result = await channel.next(15_000);
    // An accepted request is preceded by the server's relay offer (and plan) and path candidates.
    while (result.type === FrameType.RELAY_OFFER || result.type === FrameType.RELAY_PLAN || result.type === FrameType.CANDIDATES)
      result = await channel.next(15_000);
    if (result.type !== FrameType.CONNECT_RESULT) throw new Error(`expected CONNECT_RESULT, got frame type ${result.type}`);
    return { status: result.status, sealed };
  } finally {
    channel.close();
    tls.destroy();
  }
}
