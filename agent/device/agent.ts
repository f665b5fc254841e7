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
import { createAuthorizer, type Decision, type Forwarded } from './authorizer.js';
import { openReplayMark, type ReplayMark } from './replay-mark.js';
import { Status } from '../protocol/status.js';
import { deriveWakeKey, verifyWake, type Wake } from '../protocol/wake.js';
import { RefuseReason, type RefuseReasonValue } from '../protocol/udp-packets.js';
import { equalBytes } from '../protocol/keys.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { createRegistrar, type Registrar, type RegistrarStatus } from './registrar.js';
import { createAdaptiveKeepalive } from './adaptive-keepalive.js';
import { ReplayCache } from '../common/replay-cache.js';
import type { ReverseOffer } from './request-session.js';
import type * as RequestSession from './request-session.js';
import { createReverseListener, type ReverseListener } from './reverse-listener.js';
import type { PortMapping } from '../nat/port-mapping.js';
import type { Endpoint } from '../protocol/address.js';
import type { AgentSettings } from './settings.js';

export const AGENT_COUNTERS = ['sessions', 'sessionsServed', 'sessionsRefused', 'sessionsFailed', 'droppedBusy', 'wakeRefused'] as const;

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
  /** The router's forwarding of the reverse port, if one was made. */
  portMapping(): { readonly externalHost: string; readonly externalPort: number; readonly via: 'upnp' | 'natpmp' } | null;
  /** The reverse listener's local port, or null when the strategy is off. */
  reversePort(): number | null;
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
    replayBarrierMs: () => replayMark?.barrierMs ?? 0,
  });
  let replayMark: ReplayMark | null = null;
  /** S207, then the accepted request's timestamp on disk before the device acts on it (P12). */
  const authorizeAndMark = async (fwd: Forwarded, serverNowMs: number, serverAddress: string, wakeNonce: Buffer): Promise<Decision> => {
    const d = authorize(fwd, serverNowMs, serverAddress);
    if (d.status !== Status.OK) return d;
    // The request must be the one whose wake proof made us connect (P9).
    if (!equalBytes(d.request.clientNonce, wakeNonce)) return { status: Status.BAD_REQUEST, reason: 'the request is not the one its wake proof named' };
    await replayMark?.accept(d.request.timestampMs);
    return d;
  };
  const freshnessMs = input.freshnessMs ?? REQUEST_FRESHNESS_MS;
  const wakeKey = deriveWakeKey(identity.accessKey);
  const wakesSeen = new ReplayCache();

  /**
   * P9: before any TLS work, the notification's wake proof must verify under our wake key (the
   * client knows the password), be fresh in server time, and be new. Otherwise the server is told
   * (REFUSE) and ends the request at once; strangers flooding our ID cost us one HMAC each.
   */
  function wakeRefusal(wake: Wake): RefuseReasonValue | null {
    if (!verifyWake(wakeKey, identity.equipmentId, wake)) return RefuseReason.BAD_TAG;
    const now = registrar.serverNow();
    if (Math.abs(wake.timestampMs - now) > freshnessMs) return RefuseReason.STALE;
    return wakesSeen.check(wake.nonce, wake.timestampMs + freshnessMs, now) === 'fresh' ? null : RefuseReason.REPLAYED;
  }

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
    fetchServerTime: (signal) =>
      import('../rendezvous/server-time.js').then(({ readServerTime }) =>
        readServerTime({ host: settings.server.host, port: settings.server.tlsPort, serverName: settings.server.serverName, caPem: identity.caCert }, signal),
      ),
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

  let sessionModule: Promise<typeof RequestSession> | null = null;
  const loadSession = (): Promise<typeof RequestSession> => (sessionModule ??= import('./request-session.js'));
  let reverseListener: ReverseListener | null = null;
  let mapping: PortMapping | null = null;
  let mappingDone: Promise<void> = Promise.resolve();
  let renewTimer: NodeJS.Timeout | undefined;
  const reverseOffer = (): ReverseOffer | undefined => {
    const listener = reverseListener;
    if (!listener) return undefined;
    return {
      listener,
      endpoints: () => {
        const out: Endpoint[] = [];
        if (mapping) out.push({ address: mapping.externalHost, port: mapping.externalPort });
        // "The address you see me from": right when the device has a public address itself.
        out.push({ address: '0.0.0.0', port: listener.port() });
        return out;
      },
    };
  };

  /** In the background: start-up must not wait for gateway discovery. */
  async function mapReversePort(port: number): Promise<void> {
    const mode = settings.reverse.portMapping;
    if (mode === 'off') return;
    try {
      const { mapTcpPort } = await import('../nat/port-mapping.js');
      const m = await mapTcpPort({ port, mode, logger, signal: aborter.signal });
      if (aborter.signal.aborted) {
        await m?.release().catch(() => undefined);
        return;
      }
      mapping = m;
      if (!m) logger.info({ mode }, 'no gateway forwards the reverse port; clients reach us by the other paths');
    } catch (err) {
      if (!aborter.signal.aborted) logger.warn({ err: (err as Error).message }, 'port mapping failed');
    }
    scheduleRenewal(port);
  }

  /**
   * Renew on a timer: the gateway may have restarted and forgotten the mapping (or have gone, or
   * a new one appeared). A renewal that fails drops the mapping and searches again next time.
   */
  function scheduleRenewal(port: number): void {
    if (aborter.signal.aborted) return;
    renewTimer = setTimeout(() => {
      const m = mapping;
      const attempt = m
        ? m.renew(AbortSignal.any([aborter.signal, AbortSignal.timeout(10_000)])).then(
            () => logger.info({ external: `${m.externalHost}:${m.externalPort}`, via: m.via }, 'port mapping renewed'),
            (err: Error) => {
              if (aborter.signal.aborted) return;
              logger.warn({ err: err.message }, 'port mapping lost; searching for a gateway again');
              mapping = null;
              void m.release().catch(() => undefined);
              return mapReversePort(port).then(() => undefined);
            },
          )
        : mapReversePort(port).then(() => undefined);
      mappingDone = attempt.then(() => {
        if (m && mapping === m) scheduleRenewal(port);
      });
    }, settings.reverse.mappingRenewMs);
    renewTimer.unref();
  }

  function onNotify(requestId: Buffer, wake: Wake): void {
    const refusal = wakeRefusal(wake);
    if (refusal !== null) {
      counters.inc('wakeRefused');
      logger.info({ requestId: requestId.toString('hex').slice(0, 12), reason: refusal }, 'notification refused before connecting: its wake proof does not verify (wrong password), is stale or was seen');
      registrar.refuse(requestId, refusal);
      return;
    }
    if (active.size >= settings.dial.maxConcurrent) {
      counters.inc('droppedBusy');
      logger.warn({ active: active.size }, 'too many sessions; ignoring notification');
      return;
    }
    counters.inc('sessions');
    // The replay mark's fsync (P12) is the longest wait of a connection (tens of ms): start it now,
    // while the TLS attach runs; the wake carries the request's timestamp (the client stamps both
    // with the same server time). authorizeAndMark still awaits it before the device acts.
    void replayMark?.accept(wake.timestampMs);
    const reverse = reverseOffer();
    // Loaded at the first request, not at start-up: TLS and the session code are most of the
    // agent's start-up cost, and an appliance may go days between requests (start -> READY budget).
    const p = loadSession().then(({ runRequestSession }) => runRequestSession(requestId, {
      identity,
      server: { host: settings.server.host, port: settings.server.tlsPort, serverName: settings.server.serverName },
      authorize: (fwd, now, serverAddress) => authorizeAndMark(fwd, now, serverAddress, wake.nonce),
      serverNow: () => registrar.serverNow(),
      observeServerTime: (t, local) => registrar.observeServerTime(t, local),
      dialTimeoutMs: settings.dial.connectTimeoutMs,
      directTimeoutMs: settings.dial.directTimeoutMs,
      relayAfterMs: settings.dial.relayAfterMs,
      holePunch: settings.dial.holePunch,
      ...(reverse ? { reverse } : {}),
      // Without it the request session refuses a session, as an agent from before sessions does.
      ...(settings.dial.sessions ? { services: () => settings.services } : {}),
      logger,
      signal: aborter.signal,
    }))
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
      replayMark ??= await openReplayMark({ stateDir: settings.stateDir, logger });
      if (settings.reverse.enabled) {
        const listener = createReverseListener({
          port: settings.reverse.listenPort,
          logger,
          tokenTimeoutMs: settings.reverse.tokenTimeoutMs,
          maxPending: settings.reverse.maxPending,
        });
        await listener.start();
        reverseListener = listener;
        logger.info({ port: listener.port() }, 'reverse port listening');
        mappingDone = mapReversePort(listener.port());
      }
      await registrar.start();
    },
    async stop() {
      aborter.abort();
      clearTimeout(renewTimer);
      await registrar.stop();
      await Promise.allSettled([...active]);
      await mappingDone;
      // Remove the router's forwarding on a clean exit (the lease would otherwise linger).
      const m = mapping;
      mapping = null;
      if (m) {
        await m.release().catch((err: Error) => logger.warn({ err: err.message }, 'could not remove the port mapping'));
        logger.info({ external: `${m.externalHost}:${m.externalPort}` }, 'port mapping removed');
      }
      await reverseListener?.stop();
      reverseListener = null;
    },
    portMapping: () => (mapping ? { externalHost: mapping.externalHost, externalPort: mapping.externalPort, via: mapping.via } : null),
    reversePort: () => reverseListener?.port() ?? null,
    applySettings(next) {
      settings = next;
      logger.info({ services: [...next.services.keys()] }, 'settings applied');
    },
  };
}
