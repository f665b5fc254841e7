/**
 * Write on change (registration-endpoint.ts with a shared list): a registration reaches the shared
 * list only when the device is new here, its mapping changed, the entry is due for refresh, or the
 * shared list may have lost it (Redis restarted, a primary failed over). Replays are still refused
 * by this node's own list, before anything is written (P1).
 */
import test from 'ava';
import { silentLogger } from '../../agent/common/logger.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { createRegistrationEndpoint } from '../../agent/server/registration-endpoint.js';
import { createMemoryRegistry, type RegistryBackend, type RegistryEntry } from '../../agent/server/registry.js';
import { recordingUdp } from '../helpers/harness.js';
import { registerThroughCookie } from '../helpers/udp-register.js';
import { randomBytes } from 'node:crypto';
import { REGISTER_INTERVAL_MS } from '../../agent/protocol/constants.js';
import { SHARED_REFRESH_AFTER_MS } from '../../agent/server/redis-registry.js';

test('registrations write the shared list only on change, on refresh, or after it may have lost them', async (t) => {
  const masterKey = randomBytes(32);
  const key = deriveRegistrationKey(masterKey, 'WOC-1');
  let now = 1_800_000_000_000;
  const clock = { now: () => now };
  const writes: RegistryEntry[] = [];
  const backend: RegistryBackend = {
    kind: 'redis',
    lookup: () => undefined,
    record: async (_id, e) => {
      writes.push(e);
      return { outcome: 'accepted', moved: writes.length === 1, previous: undefined };
    },
    sweep: () => 0,
  };
  const shared = { nodeId: 'node-a', refreshAfterMs: 60_000, writesValidSinceMs: 0 };
  const registry = createMemoryRegistry();
  const ep = createRegistrationEndpoint({
    host: '127.0.0.1',
    port: 0,
    masterKey,
    registry,
    backend,
    sharedWrites: shared,
    clock,
    logger: silentLogger(),
  });
  await ep.start();
  t.teardown(() => ep.stop());
  const to = { port: ep.address().port };
  const device = await recordingUdp(t);

  await registerThroughCookie(device, to, 'WOC-1', key, now);
  t.is(writes.length, 1, 'a new device is written');
  for (let i = 1; i <= 5; i++) {
    now += 10_000;
    await registerThroughCookie(device, to, 'WOC-1', key, now);
  }
  t.is(writes.length, 1, 'five unchanged registrations within the refresh period: nothing written');
  t.is(ep.counters.get('sharedWriteSkipped'), 5);
  t.is(registry.get('WOC-1')!.lastTimestampMs, now, "this node's own list has the newest timestamp (replays are refused here, P1)");

  now += 10_001; // 60,001 ms after the write
  await registerThroughCookie(device, to, 'WOC-1', key, now);
  t.is(writes.length, 2, 'due for refresh: written');

  now += 1000;
  shared.writesValidSinceMs = now - 1; // Redis came back, or a primary failed over
  await registerThroughCookie(device, to, 'WOC-1', key, now);
  t.is(writes.length, 3, 'the shared list may have lost it: written');

  now += 1000;
  const moved = await recordingUdp(t); // another source port: the NAT's mapping changed
  await registerThroughCookie(moved, to, 'WOC-1', key, now);
  t.is(writes.length, 4, 'a new mapping: written');
  t.like(writes[3], { port: moved.port, lastTimestampMs: now });
  t.is(ep.counters.get('sharedWrites'), 4);
});

test('steady state at the default refresh and registration interval: at most one registration in 7 written', async (t) => {
  const masterKey = randomBytes(32);
  const key = deriveRegistrationKey(masterKey, 'WOC-2');
  let now = 1_800_000_000_000;
  let writes = 0;
  const backend: RegistryBackend = {
    kind: 'redis',
    lookup: () => undefined,
    record: async () => ({ outcome: 'accepted', moved: ++writes === 1, previous: undefined }),
    sweep: () => 0,
  };
  const ep = createRegistrationEndpoint({
    host: '127.0.0.1',
    port: 0,
    masterKey,
    registry: createMemoryRegistry(),
    backend,
    sharedWrites: { nodeId: 'node-a', refreshAfterMs: SHARED_REFRESH_AFTER_MS, writesValidSinceMs: 0 },
    clock: { now: () => now },
    logger: silentLogger(),
  });
  await ep.start();
  t.teardown(() => ep.stop());
  const device = await recordingUdp(t);
  const registrations = 7 * 8; // 23 minutes of a device at the default interval
  for (let i = 0; i < registrations; i++) {
    await registerThroughCookie(device, { port: ep.address().port }, 'WOC-2', key, now);
    now += REGISTER_INTERVAL_MS;
  }
  t.is(ep.counters.get('sharedWrites'), writes);
  t.is(ep.counters.get('sharedWrites') + ep.counters.get('sharedWriteSkipped'), registrations);
  t.true(writes * 7 <= registrations, `${writes} of ${registrations} registrations written`);
});
