/**
 * The agent's registration loop alone (the same createRegistrar and createAdaptiveKeepalive the
 * agent composes), for the keepalive lab spec: it may run with time scaled down (bounds below
 * the 15 s floor that settings enforce for real devices). Runs inside the device namespace;
 * prints its counters as one JSON line at the end.
 *
 *   node keepalive-device.js '{"identityFile":...,"server":...,"port":...,"localPort":...,"durationMs":...,
 *                              "mode":"fixed"|"adaptive","intervalMs":...,"minIntervalMs":...,"maxIntervalMs":...}'
 */
import { systemClock } from '../../agent/common/clock.js';
import { silentLogger } from '../../agent/common/logger.js';
import { createAdaptiveKeepalive } from '../../agent/device/adaptive-keepalive.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { createRegistrar } from '../../agent/device/registrar.js';

interface Args {
  identityFile: string;
  server: string;
  port: number;
  localPort: number;
  durationMs: number;
  mode: 'fixed' | 'adaptive';
  intervalMs: number;
  minIntervalMs: number;
  maxIntervalMs: number;
}

const a = JSON.parse(process.argv[2] ?? '{}') as Args;
const identity = await loadIdentity(a.identityFile);
const logger = silentLogger();
const keepalive =
  a.mode === 'adaptive'
    ? createAdaptiveKeepalive({
        equipmentId: identity.equipmentId,
        registrationKey: identity.registrationKey,
        minIntervalMs: a.minIntervalMs,
        maxIntervalMs: a.maxIntervalMs,
        logger,
      })
    : undefined;
const registrar = createRegistrar({
  equipmentId: identity.equipmentId,
  registrationKey: identity.registrationKey,
  serverHost: a.server,
  serverPort: a.port,
  intervalMs: a.intervalMs,
  localPort: a.localPort,
  clock: systemClock,
  logger,
  onNotify: () => undefined,
  ...(keepalive ? { keepalive } : {}),
});
await registrar.start();
await new Promise((r) => setTimeout(r, a.durationMs));
await registrar.stop();
process.stdout.write(
  `${JSON.stringify({ registrar: registrar.counters.snapshot(), keepalive: keepalive?.counters.snapshot() ?? null, state: keepalive?.state() ?? null })}\n`,
);
