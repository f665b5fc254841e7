/**
 * The device's node remembers, for each request it notified a device for on another node's
 * behalf, which node holds the client (so a REFUSE reaches it, P9). That memory is bounded: the
 * oldest request is forgotten first. Only decoded messages reach routing (node-messages.ts).
 */
import test from 'ava';
import { Counters } from '../../agent/common/counters.js';
import { silentLogger } from '../../agent/common/logger.js';
import { RefuseReason } from '../../agent/protocol/udp-packets.js';
import { BROKER_COUNTERS } from '../../agent/server/connection-broker.js';
import type { NodeMessage } from '../../agent/server/node-messages.js';
import { createNodeRouting } from '../../agent/server/node-routing.js';
import type { RedisRegistry } from '../../agent/server/redis-registry.js';
import type { RegistrationEndpoint } from '../../agent/server/registration-endpoint.js';
import { createMemoryRegistry, type Registry } from '../../agent/server/registry.js';

const REMEMBERED = 10_000;

test('the requests notified for other nodes are remembered up to a bound, oldest forgotten first', (t) => {
  let deliver: (m: NodeMessage) => void = () => undefined;
  const sent: [string, NodeMessage][] = [];
  const cluster = {
    nodeId: 'node-dev',
    onMessage: (l: (m: NodeMessage) => void) => void (deliver = l),
    send: async (node: string, m: NodeMessage) => (sent.push([node, m]), 1),
  } as unknown as RedisRegistry;
  const notified: string[] = [];
  const routing = createNodeRouting({
    cluster,
    registry: { get: () => ({ address: '203.0.113.5', port: 4000, lastSeenMs: 0, lastTimestampMs: 0 }) } as unknown as Registry,
    udp: {
      notify: (_id: string, requestId: Buffer) => (notified.push(requestId.toString('hex')), true),
    } as unknown as RegistrationEndpoint,
    counters: new Counters(BROKER_COUNTERS),
    logger: silentLogger(),
    proofValid: () => false,
    deviceAttached: () => undefined,
    exchange: async () => ({ status: 0 }),
  });
  const rid = (i: number): string => i.toString(16).padStart(32, '0');
  const wake = { nonce: Buffer.alloc(16), timestampMs: 0, tag: Buffer.alloc(16) };
  for (let i = 0; i <= REMEMBERED; i++) {
    deliver({
      kind: 'notify',
      requestId: rid(i),
      equipmentId: 'TV-1',
      deviceAddress: '203.0.113.5',
      devicePort: 4000,
      fromNode: `node-${i % 3}`,
      wake,
    });
  }
  t.is(notified.length, REMEMBERED + 1, 'every notify message sends a notification');
  t.false(routing.refused(rid(0), RefuseReason.BAD_TAG), 'the oldest request was forgotten');
  t.true(routing.refused(rid(REMEMBERED), RefuseReason.STALE), 'the newest is remembered');
  t.true(routing.refused(rid(1), RefuseReason.BAD_TAG), 'the second oldest too');
  t.deepEqual(
    sent.map(([node, m]) => [node, m.kind, 'requestId' in m ? m.requestId : undefined]),
    [
      [`node-${REMEMBERED % 3}`, 'refused', rid(REMEMBERED)],
      ['node-1', 'refused', rid(1)],
    ],
  );
});

test('a device taken over by another node with a newer registration is forgotten here (so a return is written again); an older claim changes nothing', (t) => {
  let deliver: (m: NodeMessage) => void = () => undefined;
  const cluster = { nodeId: 'node-a', onMessage: (l: (m: NodeMessage) => void) => void (deliver = l) } as unknown as RedisRegistry;
  const registry = createMemoryRegistry();
  registry.set('TV-1', { address: '203.0.113.5', port: 4000, lastSeenMs: 0, lastTimestampMs: 5000, sharedAtMs: 1 });
  createNodeRouting({
    cluster,
    registry,
    udp: {} as unknown as RegistrationEndpoint,
    counters: new Counters(BROKER_COUNTERS),
    logger: silentLogger(),
    proofValid: () => false,
    deviceAttached: () => undefined,
    exchange: async () => ({ status: 0 }),
  });
  deliver({ kind: 'taken', equipmentId: 'TV-1', byNode: 'node-b', timestampMs: 4000 });
  t.truthy(registry.get('TV-1'), 'not newer than what this node accepted: kept');
  deliver({ kind: 'taken', equipmentId: 'TV-1', byNode: 'node-b', timestampMs: 6000 });
  t.is(registry.get('TV-1'), undefined);
});
