/**
 * The appliance agent (patent: request acceptance equipment 103): registration loop plus
 * request sessions, composed. Settings may be replaced at run time (hot reload of the
 * services allow-list and dial policy); identity never changes while running.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import { silentLogger } from '../common/logger.js';
import { rejectUnknownKeys, requireOption } from '../common/options.js';
import { REQUEST_FRESHNESS_MS } from '../protocol/constants.js';
import { createAuthorizer } from './authorizer.js';
import type { DeviceIdentity } from './identity.js';
import { createRegistrar, type Registrar, type RegistrarStatus } from './registrar.js';
import { createAdaptiveKeepalive } from './adaptive-keepalive.js';
import { ReplayCache } from './replay-cache.js';
import { runRequestSession } from './request-session.js';
import type { AgentSettings } from './settings.js';

export const AGENT_COUNTERS = ['sessions', 'sessionsServed', 'sessionsRefused', 'sessionsFailed', 'droppedBusy'] as const;

export interface AgentOptions {
  readonly identity: DeviceIdentity;
  readonly settings: AgentSettings;
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly freshnessMs?: number;
  readonly onStatus?: (status: RegistrarStatus) => void;
}

export interface Agent {
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): RegistrarStatus;
  /** Apply new settings: services and dial policy at once; server and intervals need a restart. */
  applySettings(settings: AgentSettings): void;
  readonly registrar: Registrar;
  readonly counters: Counters<(typeof AGENT_COUNTERS)[number]>;
}

export function createAgent(input: AgentOptions): Agent {
  rejectUnknownKeys('agent options', input, ['identity', 'settings', 'clock', 'logger', 'freshnessMs', 'onStatus']);
  const identity = requireOption('agent options', 'identity', input.identity);
  let settings = requireOption('agent options', 'settings', input.settings);
  const clock = input.clock ?? systemClock;
  const logger = (input.logger ?? silentLogger()).child({ equipmentId: identity.equipmentId });
  const counters = new Counters(AGENT_COUNTERS);
  const replayCache = new ReplayCache();
  const active = new Set<Promise<unknown>>();
  let aborter = new AbortController();

  const authorize = createAuthorizer({
    equipmentId: identity.equipmentId,
    accessKey: identity.accessKey,
    freshnessMs: input.freshnessMs ?? REQUEST_FRESHNESS_MS,
    replayCache,
    services: () => settings.services,
    dialPolicy: () => settings.dial,
  });

  const registrar = createRegistrar({
    equipmentId: identity.equipmentId,
    registrationKey: identity.registrationKey,
    serverHost: settings.server.host,
    serverPort: settings.server.udpPort,
    intervalMs: settings.registration.intervalMs,
    localPort: settings.registration.localPort,
    clock,
    logger,
    onNotify,
    ...(input.onStatus ? { onStatus: input.onStatus } : {}),
    ...(settings.keepalive.mode === 'adaptive'
      ? {
          keepalive: createAdaptiveKeepalive({
            equipmentId: identity.equipmentId,
            registrationKey: identity.registrationKey,
            minIntervalMs: settings.keepalive.minIntervalMs,
            maxIntervalMs: settings.keepalive.maxIntervalMs,
            logger,
          }),
        }
      : {}),
  });

  function onNotify(requestId: Buffer): void {
    if (active.size >= settings.dial.maxConcurrent) {
      counters.inc('droppedBusy');
      logger.warn({ active: active.size }, 'too many sessions; ignoring notification');
      return;
    }
    counters.inc('sessions');
    const p = runRequestSession(requestId, {
      identity,
      server: { host: settings.server.host, port: settings.server.tlsPort, serverName: settings.server.serverName },
      authorize,
      serverNow: () => registrar.serverNow(),
      observeServerTime: (t, local) => registrar.observeServerTime(t, local),
      dialTimeoutMs: settings.dial.connectTimeoutMs,
      directTimeoutMs: settings.dial.directTimeoutMs,
      logger,
      signal: aborter.signal,
    })
      .then((o) => counters.inc(o.status === 0 ? 'sessionsServed' : 'sessionsRefused'))
      .catch(() => counters.inc('sessionsFailed'))
      .finally(() => active.delete(p));
    active.add(p);
  }

  return {
    registrar,
    counters,
    status: () => registrar.status(),
    async start() {
      aborter = new AbortController();
      logger.info({ server: settings.server.host, services: [...settings.services.keys()] }, 'agent starting');
      await registrar.start();
    },
    async stop() {
      aborter.abort();
      await registrar.stop();
      await Promise.allSettled([...active]);
    },
    applySettings(next) {
      settings = next;
      logger.info({ services: [...next.services.keys()] }, 'settings applied');
    },
  };
}
