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
import { openReplayMark, REPLAY_MARK_LEASE_MS, type ReplayMark } from './replay-mark.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { Status } from '../protocol/status.js';
import type { Wake } from '../protocol/wake.js';
import { RefuseReason, type RefuseReasonValue } from '../protocol/udp-packets.js';
import { equalBytes } from '../protocol/keys.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { type Registrar, type RegistrarStatus } from './registrar.js';
import { createDualRegistrar } from './dual-registrar.js';
import { createAdaptiveKeepalive } from './adaptive-keepalive.js';
import { ReplayCache } from '../common/replay-cache.js';
import type * as RequestSession from './request-session.js';
import { createReversePort } from './reverse-port.js';
import { createMappingLearner } from '../nat/mapping-behaviour.js';
import type { AgentSettings } from './settings.js';
import type { Credential } from './credentials.js';
import { createOwnerAccess } from './owner-access.js';
import type { OwnerStore } from './owner-state.js';
import { createKeptConnection, type ServerConnection } from './kept-connection.js';
import { SESSION_STREAM_COUNTERS } from '../session/session-counts.js';

export const AGENT_COUNTERS = [
  'sessions',
  'sessionsServed',
  'sessionsRefused',
  'sessionsFailed',
  'droppedBusy',
  'wakeRefused',
  /** Wakes that came over the kept connection (kept-connection.ts) instead of a UDP notification. */
  'keptWakes',
  /** Kept connections closed after their idle time by us, or by the server. */
  'keptClosedIdle',
  'keptClosedByServer',
  /** Streams of sessions refused, by reason, and sessions whose framing the client broke (session-counts.ts). */
  ...SESSION_STREAM_COUNTERS,
] as const;

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
  /** The owner's state (pairings, password), once started. */
  ownerState(): OwnerStore | null;
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
  const authorizeAndMark = async (
    fwd: Forwarded,
    serverNowMs: number,
    serverAddress: string,
    wakeNonce: Buffer,
    credential: Credential,
  ): Promise<Decision> => {
    const d = authorize(fwd, serverNowMs, serverAddress, credential.key);
    if (d.status !== Status.OK) return d;
    // The request must be the one whose wake proof made us connect (P9).
    if (!equalBytes(d.request.clientNonce, wakeNonce))
      return { status: Status.BAD_REQUEST, reason: 'the request is not the one its wake proof named' };
    await replayMark?.accept(d.request.timestampMs);
    owner.touch(credential);
    return d;
  };
  const freshnessMs = input.freshnessMs ?? REQUEST_FRESHNESS_MS;
  const wakesSeen = new ReplayCache();
  // The owner's state (pairings, password, issue 19): opened at start(), under state_dir.
  const owner = createOwnerAccess({ identity, clock, logger });

  /**
   * P9: before any TLS work, the notification's wake proof must verify under our wake key (the
   * client knows the password), be fresh in server time, and be new. Otherwise the server is told
   * (REFUSE) and ends the request at once; strangers flooding our ID cost us one HMAC each per key
   * (the password's and each paired client's, owner-access.ts). Else: the credential it verified under.
   */
  function wakeRefusal(wake: Wake): RefuseReasonValue | Credential {
    const m = owner.match(wake);
    if (m === null) return RefuseReason.BAD_TAG;
    if ('revoked' in m) return RefuseReason.REVOKED;
    const now = registrar.serverNow();
    if (Math.abs(wake.timestampMs - now) > freshnessMs) return RefuseReason.STALE;
    return wakesSeen.check(wake.nonce, wake.timestampMs + freshnessMs, now) === 'fresh' ? m.credential : RefuseReason.REPLAYED;
  }

  const generation = identity.generation ? { generation: identity.generation } : {};
  const registrar = createDualRegistrar({
    equipmentId: identity.equipmentId,
    ...generation,
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
        readServerTime(
          { host: settings.server.host, port: settings.server.tlsPort, serverName: settings.server.serverName, caPem: identity.caCert },
          signal,
        ),
      ),
    ...(input.onStatus ? { onStatus: input.onStatus } : {}),
    ...(settings.keepalive.mode === 'adaptive'
      ? {
          keepalive: createAdaptiveKeepalive({
            equipmentId: identity.equipmentId,
            ...generation,
            registrationKey: identity.registrationKey,
            minIntervalMs: settings.keepalive.minIntervalMs,
            maxIntervalMs: settings.keepalive.maxIntervalMs,
            logger,
          }),
        }
      : {}),
  });

  // Our NAT's mapping behaviour (with the server's probe port): whether the relay need not wait (paths/relay-hint.ts).
  const natMapping = createMappingLearner({
    equipmentId: identity.equipmentId,
    ...generation,
    registrationKey: identity.registrationKey,
    serverHost: settings.server.host,
    udpPort: settings.server.udpPort,
    probePort: settings.server.probePort,
    serverOffsetMs: () => registrar.serverNow() - clock.now(),
    logger,
  });

  let sessionModule: Promise<typeof RequestSession> | null = null;
  const loadSession = (): Promise<typeof RequestSession> => (sessionModule ??= import('./request-session.js'));
  // The reverse port and its forwarding on the home gateway (reverse-port.ts).
  const reversePort = createReversePort({ settings: () => settings, equipmentId: identity.equipmentId, logger });

  // The attach connection kept after a request (kept-connection.ts): the next wake may come over it.
  const kept = createKeptConnection({
    onWake: (w, conn) => {
      counters.inc('keptWakes');
      logger.info(
        { requestId: w.requestId.toString('hex').slice(0, 12) },
        'S205 connection-request wake received over the kept connection',
      );
      onWake(w.requestId, w.wake, conn);
    },
    onClosed: (why) => counters.inc(why === 'idle' ? 'keptClosedIdle' : 'keptClosedByServer'),
  });
  /** Requests woken for (over UDP or the kept connection): a second wake for one is ignored, as the registrar does. */
  const wokenFor = new ReplayCache(4096);

  function onNotify(requestId: Buffer, wake: Wake): void {
    onWake(requestId, wake);
  }

  /** A wake (S205): a UDP notification, or over the kept connection `over`. Checked alike (P9). */
  function onWake(requestId: Buffer, wake: Wake, over?: ServerConnection): void {
    const now = clock.now();
    // 'full' (a flood of requests) is let through: failing closed here would lock the owner out (P9).
    if (wokenFor.check(requestId, now + 60_000, now) === 'replayed') {
      over?.channel.close();
      return;
    }
    const refusal = wakeRefusal(wake);
    if (typeof refusal === 'number') {
      counters.inc('wakeRefused');
      logger.info(
        { requestId: requestId.toString('hex').slice(0, 12), reason: refusal },
        'notification refused before connecting: its wake proof does not verify (wrong password), is stale or was seen',
      );
      registrar.refuse(requestId, refusal);
      // Nothing is dialled, nothing attaches: a kept connection a refused wake came over is closed.
      over?.channel.close();
      return;
    }
    if (active.size >= settings.dial.maxConcurrent) {
      counters.inc('droppedBusy');
      logger.warn({ active: active.size }, 'too many sessions; ignoring notification');
      over?.channel.close();
      return;
    }
    counters.inc('sessions');
    // The replay mark's fsync (P12) is the longest wait of a connection (tens of ms) when one is
    // needed (the mark is written ahead, replay-mark.ts): start it now, while the attach runs; the
    // wake carries the request's timestamp (the client stamps both with the same server time).
    // authorizeAndMark still awaits it before the device acts.
    void replayMark?.accept(wake.timestampMs);
    const credential = refusal;
    // Ended when the owner takes this credential's access away (revoke, password change, reset).
    const access = owner.track(credential);
    const ownerSession = owner.ownerSession(credential);
    const reverse = reversePort.offer();
    // Loaded at the first request, not at start-up: TLS and the session code are most of the
    // agent's start-up cost, and an appliance may go days between requests (start -> READY budget).
    const p = loadSession()
      .then(({ runRequestSession }) =>
        runRequestSession(requestId, {
          identity: credential.key === identity.accessKey ? identity : { ...identity, accessKey: credential.key },
          server: { host: settings.server.host, port: settings.server.tlsPort, serverName: settings.server.serverName },
          authorize: (fwd, now, serverAddress) => authorizeAndMark(fwd, now, serverAddress, wake.nonce, credential),
          serverNow: () => registrar.serverNow(),
          // The local time on the agent's own clock, the one serverNow() adds the offset to (the
          // session reads Date.now(), which differs from an injected clock: the offset came out wrong).
          observeServerTime: (t) => registrar.observeServerTime(t, clock.now()),
          dialTimeoutMs: settings.dial.connectTimeoutMs,
          directTimeoutMs: settings.dial.directTimeoutMs,
          relayAfterMs: settings.dial.relayAfterMs,
          holePunch: settings.dial.holePunch,
          dialPolicy: () => settings.dial,
          natMapping: () => natMapping.current(),
          ...(reverse ? { reverse } : {}),
          // Without it the request session refuses a session, as an agent from before sessions does.
          ...(settings.dial.sessions ? { services: () => settings.services } : {}),
          logger,
          countStream: (what) => counters.inc(what),
          signal: AbortSignal.any([aborter.signal, access.signal]),
          ...(ownerSession ? { ownerSession } : {}),
          ...(over ? { over } : {}),
          ...(settings.server.keepIdleMs > 0 && !aborter.signal.aborted
            ? { keep: { idleMs: settings.server.keepIdleMs, keep: (conn: ServerConnection) => keepConnection(conn) } }
            : {}),
        }),
      )
      .then((o) => counters.inc(o.status === 0 ? 'sessionsServed' : 'sessionsRefused'))
      .catch(() => counters.inc('sessionsFailed'))
      .finally(() => {
        active.delete(p);
        access.done();
      });
    active.add(p);
  }

  function keepConnection(conn: ServerConnection): void {
    // Not after stop(), nor once the setting was turned off (hot reload).
    if (aborter.signal.aborted || settings.server.keepIdleMs === 0) return conn.channel.close();
    kept.keep(conn, settings.server.keepIdleMs);
  }

  return {
    registrar,
    counters,
    status: () => registrar.status(),
    async start() {
      aborter = new AbortController();
      logger.info({ server: settings.server.host, services: [...settings.services.keys()] }, 'agent starting');
      replayMark ??= await openReplayMark({ stateDir: settings.stateDir, logger });
      owner.open(settings.stateDir);
      await reversePort.start(aborter.signal);
      // Restarted within the replay mark's lease of the last request served: requests stamped
      // before the mark are refused (P12), so register once the clock has passed it (at most the lease).
      const ahead = Math.min((replayMark?.barrierMs ?? 0) - clock.now(), REPLAY_MARK_LEASE_MS);
      if (ahead > 0) {
        logger.info({ waitMs: ahead }, 'restarted within the replay mark lease: registering once it has passed');
        await sleep(ahead, undefined, { signal: aborter.signal }).catch(() => undefined);
      }
      await registrar.start();
      natMapping.start();
    },
    async stop() {
      aborter.abort();
      kept.close();
      natMapping.stop();
      owner.close();
      await registrar.stop();
      await Promise.allSettled([...active]);
      // A renewal of the replay mark written ahead may still be under way (replay-mark.ts).
      await replayMark?.flush();
      await reversePort.stop();
    },
    portMapping: () => reversePort.mapping(),
    reversePort: () => reversePort.port(),
    ownerState: () => owner.store(),
    applySettings(next) {
      settings = next;
      logger.info({ services: [...next.services.keys()] }, 'settings applied');
    },
  };
}
