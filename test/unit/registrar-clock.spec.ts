/**
 * The registrar keeps registering whatever its clock returns: a clock with sub-millisecond
 * values once made the offset fractional, and the next registration's u64 timestamp threw,
 * crashing the agent at its second registration (found in the NAT lab).
 */
import test from 'ava';
import { createRegistrar } from '../../agent/device/registrar.js';
import { silentLogger } from '../../agent/common/logger.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { createRegistrationEndpoint } from '../../agent/server/registration-endpoint.js';
import { createMemoryRegistry } from '../../agent/server/registry.js';
import { randomBytes } from 'node:crypto';
import { waitUntil } from '../helpers/harness.js';

test('registrations continue with a clock that returns fractional milliseconds', async (t) => {
  const masterKey = randomBytes(32);
  const registry = createMemoryRegistry();
  const fractional = { now: () => Date.now() + 0.37 };
  const server = createRegistrationEndpoint({ host: '127.0.0.1', port: 0, masterKey, registry, clock: fractional, logger: silentLogger() });
  await server.start();
  t.teardown(() => server.stop());
  const registrar = createRegistrar({
    equipmentId: 'CLOCK-1',
    registrationKey: deriveRegistrationKey(masterKey, 'CLOCK-1'),
    serverHost: '127.0.0.1',
    serverPort: server.address().port,
    intervalMs: 20,
    localPort: 0,
    clock: fractional,
    logger: silentLogger(),
    onNotify: () => undefined,
  });
  await registrar.start();
  t.teardown(() => registrar.stop());
  await waitUntil(() => registrar.counters.get('acked') >= 5, 'five acknowledged registrations', 10_000);
  t.is(server.counters.get('accepted'), registrar.counters.get('acked'));
});
