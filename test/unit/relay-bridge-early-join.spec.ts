/**
 * A device joining the relay at its node before the client's node has recorded its offer in Redis
 * (agent/server/relay-bridge.ts). The client's node offers the relay when it answers the verdict
 * the device's node sent it; a device whose direct dial is refused at once joins right after its
 * verdict, and on loopback its join used to find no offer: refused, the client waited 10 s for
 * nothing (the two-node suite's "relayed across nodes", 1 run in 3 on a Redis Cluster). Here the
 * offer is written just after the bridge's first lookup missed, every time.
 */
import test from 'ava';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import pino from 'pino';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType, type Frame } from '../../agent/protocol/frames.js';
import { KEY_BYTES } from '../../agent/protocol/keys.js';
import { encodeRelayOffer } from '../../agent/server/node-messages.js';
import { createRelayBridge, type RelayBridge } from '../../agent/server/relay-bridge.js';
import type { RedisRegistry } from '../../agent/server/redis-registry.js';

const ca = createCa();
const cert = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', '127.0.0.1'] });
const DEVICE = 'DEMO-TV-0001';

/** The client's node: greets, takes a device join, pairs it. Records the joins it saw. */
async function clientNode(t: { teardown(fn: () => void): void }): Promise<{ port: number; joins: Frame[] }> {
  const joins: Frame[] = [];
  const server = createTlsServer({ cert: cert.certPem, key: cert.keyPem }, (s: TLSSocket) => {
    const ch = new FrameChannel(s);
    ch.send({ type: FrameType.HELLO, serverTimeMs: Date.now() });
    void ch.next(5_000).then(
      (f) => {
        joins.push(f);
        ch.send({ type: FrameType.RELAY_PAIRED });
      },
      () => s.destroy(),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return { port: (server.address() as AddressInfo).port, joins };
}

/** Redis as the bridge sees it; `afterGet` runs after each lookup has read its answer. */
function fakeCluster(afterGet: (n: number) => void): { cluster: RedisRegistry; store: Map<string, string>; gets: () => number } {
  const store = new Map<string, string>();
  let gets = 0;
  const cluster = {
    nodeId: 'node-1',
    putValue: async (k: string, v: string) => void store.set(k, v),
    getValue: async (k: string) => {
      const v = store.get(k);
      afterGet(++gets);
      return v;
    },
  } as unknown as RedisRegistry;
  return { cluster, store, gets: () => gets };
}

/** The device's leg at the bridging node (a connected loopback pair; the server's end is returned). */
async function deviceLeg(t: { teardown(fn: () => void): void }): Promise<{ channel: FrameChannel; socket: Socket }> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const device = netConnect((server.address() as AddressInfo).port, '127.0.0.1');
  const [socket] = await accepted;
  t.teardown(() => {
    device.destroy();
    socket.destroy();
    server.close();
  });
  return { channel: new FrameChannel(socket), socket };
}

function bridgeOf(cluster: RedisRegistry): RelayBridge {
  return createRelayBridge({
    cluster,
    certPem: cert.certPem,
    masterKey: randomBytes(KEY_BYTES),
    tlsAddress: () => '127.0.0.1:1',
    joinTimeoutMs: 30_000,
    logger: pino({ level: 'silent' }),
  });
}

test('a device whose ok verdict this node sent on, joining before the offer is in Redis, is bridged once the offer is there', async (t) => {
  const node2 = await clientNode(t);
  const requestId = randomBytes(16);
  const hex = requestId.toString('hex');
  // The client's node records its offer only after the device's join has looked once, and missed.
  const { cluster, store, gets } = fakeCluster((n) => {
    if (n === 1) store.set(`{o:${hex}}`, encodeRelayOffer({ node: 'node-2', tlsHost: '127.0.0.1', tlsPort: node2.port }));
  });
  const bridge = bridgeOf(cluster);
  bridge.expect(hex, DEVICE);
  t.true(await bridge.bridge(await deviceLeg(t), DEVICE, requestId));
  t.true(gets() >= 2, 'looked again after the miss');
  t.is(node2.joins.length, 1);
  const join = node2.joins[0]!;
  t.is(join.type, FrameType.RELAY_JOIN_DEVICE);
  if (join.type === FrameType.RELAY_JOIN_DEVICE) {
    t.is(join.equipmentId, DEVICE);
    t.deepEqual(join.requestId, requestId);
  }
  t.is(bridge.bridged, 1);
});

test('a join nobody expected, one for another device, and a second join of an expected request each look once', async (t) => {
  const node2 = await clientNode(t);
  const requestId = randomBytes(16);
  const hex = requestId.toString('hex');
  let offerAfterGet = 0;
  const { cluster, store, gets } = fakeCluster((n) => {
    if (n === offerAfterGet) store.set(`{o:${hex}}`, encodeRelayOffer({ node: 'node-2', tlsHost: '127.0.0.1', tlsPort: node2.port }));
  });
  const bridge = bridgeOf(cluster);
  // Not expected: one lookup, no wait (the offer comes just too late for it).
  offerAfterGet = 1;
  t.false(await bridge.bridge(await deviceLeg(t), DEVICE, requestId));
  t.is(gets(), 1);
  // Expected for this device, named by another one: one lookup.
  store.clear();
  offerAfterGet = 2;
  bridge.expect(hex, DEVICE);
  t.false(await bridge.bridge(await deviceLeg(t), 'OTHER-DEVICE-1', requestId));
  t.is(gets(), 2);
  // The device's own join uses the expectation (bridged); a second join looks once.
  t.true(await bridge.bridge(await deviceLeg(t), DEVICE, requestId));
  store.clear();
  const before = gets();
  offerAfterGet = before + 1;
  t.false(await bridge.bridge(await deviceLeg(t), DEVICE, requestId));
  t.is(gets(), before + 1);
  t.is(node2.joins.length, 1);
});

test('a device whose socket is destroyed while its offer is awaited ends the wait', async (t) => {
  const requestId = randomBytes(16);
  const { cluster, gets } = fakeCluster(() => undefined);
  const bridge = bridgeOf(cluster);
  bridge.expect(requestId.toString('hex'), DEVICE);
  const leg = await deviceLeg(t);
  const bridged = bridge.bridge(leg, DEVICE, requestId);
  await new Promise((resolve) => setTimeout(resolve, 50));
  // As the server's stop() or a reset does: the bridge's end of the device's leg is destroyed.
  leg.socket.destroy();
  const atDestroy = gets();
  t.false(await bridged);
  // Waited out to its bound instead, it would have looked ~25 times.
  t.true(gets() <= atDestroy + 1, `looked ${gets() - atDestroy} more times after the device left`);
});

test('an offer read while the device leaves is not taken: no join at the other node', async (t) => {
  const node2 = await clientNode(t);
  const requestId = randomBytes(16);
  const hex = requestId.toString('hex');
  const leg = await deviceLeg(t);
  let gets = 0;
  const cluster = {
    nodeId: 'node-1',
    putValue: async () => undefined,
    getValue: async () => {
      if (++gets === 1) return undefined;
      // The second lookup finds the offer, but the device's socket is destroyed meanwhile.
      leg.socket.destroy();
      return encodeRelayOffer({ node: 'node-2', tlsHost: '127.0.0.1', tlsPort: node2.port });
    },
  } as unknown as RedisRegistry;
  const bridge = bridgeOf(cluster);
  bridge.expect(hex, DEVICE);
  t.false(await bridge.bridge(leg, DEVICE, requestId));
  t.is(gets, 2);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(node2.joins.length, 0, 'the other node paired a device that had gone');
  t.is(bridge.bridged, 0);
});

test('a Redis error while the offer is awaited is a miss: the wait goes on and bridges once the offer is there', async (t) => {
  const node2 = await clientNode(t);
  const requestId = randomBytes(16);
  const hex = requestId.toString('hex');
  let gets = 0;
  const cluster = {
    nodeId: 'node-1',
    putValue: async () => undefined,
    getValue: async () => {
      gets++;
      if (gets === 1) return undefined;
      if (gets === 2) throw new Error('Command timed out');
      return encodeRelayOffer({ node: 'node-2', tlsHost: '127.0.0.1', tlsPort: node2.port });
    },
  } as unknown as RedisRegistry;
  const bridge = bridgeOf(cluster);
  bridge.expect(hex, DEVICE);
  t.true(await bridge.bridge(await deviceLeg(t), DEVICE, requestId));
  t.is(gets, 3);
  t.is(node2.joins.length, 1);
});
