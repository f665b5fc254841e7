/**
 * The server's UDP side: takes registrations (S201/S202/S202A), answers each with an ack that
 * echoes the observed public address, and sends connection-request notifications (packet 205)
 * to a device's NAT mapping.
 *
 * A registration is accepted only with a valid tag under the device's registration key (P1),
 * a timestamp within the clock window, and a timestamp newer than the last accepted one
 * (so a captured registration replayed from elsewhere cannot redirect the device).
 * Anything malformed is dropped and counted; nothing here throws out of the socket handler.
 *
 * With a shared backend (Redis, several nodes) the entry is written there with this node's ID and
 * kept in the node's local list too; when the backend is unreachable the registration is still
 * verified, acknowledged and kept locally (this node can still wake the device), and counted as
 * `registryUnavailable`. Devices re-register every interval, so the shared list refills by itself.
 */
import { boundAddress, closeUdp, openServerUdp } from '../common/listen.js';
import type { Socket, RemoteInfo } from 'node:dgram';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import type { ProtocolError } from '../common/errors.js';
import { normalizeAddress } from '../protocol/address.js';
import { identityName } from '../protocol/identity-name.js';
import {
  REGISTER_CLOCK_WINDOW_MS,
  UDP_TYPE_CLIENT_PROBE,
  UDP_TYPE_PROBE,
  UDP_TYPE_REFUSE,
  UDP_TYPE_REGISTER,
} from '../protocol/constants.js';
import type { Wake } from '../protocol/wake.js';
import type { Blake2sKey } from '../protocol/blake2s.js';
import {
  AckStatus,
  encodeCookie,
  encodeNotify,
  encodeRegisterAck,
  parseUdpPacket,
  deviceUdpKeys,
  verifyTag,
  type Refuse,
  type RefuseReasonValue,
  type Register,
} from '../protocol/udp-packets.js';
import type { Endpoint } from '../protocol/address.js';
import { sourceKey, type RateLimiter } from './rate-limiter.js';
import type { LocalRecordResult, Registry, RegistryBackend, RegistryEntry } from './registry.js';
import { ipv6Key, mappingKey } from './family-key.js';
import { answerClientProbe, answerProbe, PROBE_NONCES_MAX, type ProbeContext } from './probe-responder.js';
import { ReplayCache } from '../common/replay-cache.js';
import { createCookieJar, type CookieJar } from './cookie-jar.js';

const sameMapping = (e: RegistryEntry, at: Endpoint): boolean => e.address === at.address && e.port === at.port;

const ACCEPTED_IN_PLACE: LocalRecordResult = Object.freeze({ outcome: 'accepted', moved: false, previous: undefined });
const REPLAYED: LocalRecordResult = Object.freeze({ outcome: 'replayed' });

export const REGISTRATION_COUNTERS = [
  'accepted',
  'addressChanged',
  'malformed',
  'badTag',
  'replayed',
  'clockSkew',
  'challenged',
  'unexpectedType',
  'notificationsSent',
  /** Devices refusing a request whose wake proof failed (P9). */
  'refusals',
  'rateLimited',
  'registryUnavailable',
  'overloaded',
  'probes',
  'probesChallenged',
  /** Replayed nonces and stale probes from sources without a cookie: nothing sent. */
  'probesDropped',
  'mappingChecks',
  /** Clients' keyless probes answered (with `clientProbes`: the server's probe port is on). */
  'clientProbes',
  /** Shared list (write on change): registrations written to Redis, and those that did not need to be. */
  'sharedWrites',
  'sharedWriteSkipped',
  /** Not written: another node holds the device and keeps it fresh (redis-scripts.ts RECORD_LUA). */
  'sharedHeld',
  /** Registrations and probes of a device on the operator's deny list: dropped, nothing sent. */
  'denied',
] as const;
export type RegistrationCounter = (typeof REGISTRATION_COUNTERS)[number];

/**
 * Writes to the shared registry in flight at once; past this a registration is dropped (the device
 * retries) instead of queueing without bound behind a slow Redis.
 */
export const MAX_PENDING_REGISTRY_WRITES = 10_000;

export interface RegistrationEndpointOptions {
  readonly host: string;
  readonly port: number;
  readonly masterKey: Buffer;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly clockWindowMs?: number;
  /** The shared list (Redis) when this is one node of several; default: `registry` itself. */
  readonly backend?: RegistryBackend;
  /** Per source (an IPv4 address, an IPv6 /64), checked before any cryptography. */
  readonly sourceLimiter?: RateLimiter;
  /** A device's REFUSE (tag verified): it will not attach for that request (P9). */
  readonly onRefuse?: (equipmentId: string, requestId: Buffer, reason: RefuseReasonValue) => void;
  /** Probe nonces seen (shared with the probe port); default: this port's own. */
  readonly probeNonces?: ReplayCache;
  /** Return routability (P6); default: one from the master key. */
  readonly cookieJar?: CookieJar;
  /** The operator's deny list (deny-list.ts): a denied device's (or identity generation's) registrations and probes get no answer. */
  readonly denied?: (equipmentId: string, generation: number) => boolean;
  /**
   * With a shared list: write on change. A registration of a device this node holds, at the same
   * mapping, is written only `refreshAfterMs` after the last write, or when the entry was written
   * before `writesValidSinceMs` (Redis lost it maybe). The Redis registry is one.
   */
  readonly sharedWrites?: { readonly nodeId: string; readonly refreshAfterMs: number; readonly writesValidSinceMs: number };
  /** This node took the device over from `fromNode` in the shared list (that node should forget it). */
  readonly onTakenOver?: (equipmentId: string, fromNode: string, timestampMs: number) => void;
  /** Answer clients' keyless probes (probe-responder.ts answerClientProbe); the server sets it with its probe port. Default off. */
  readonly clientProbes?: boolean;
  /** Called after each accepted registration (tests, metrics). */
  readonly onRegistered?: (equipmentId: string, from: RemoteInfo) => void;
}

export interface RegistrationEndpoint {
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { address: string; port: number };
  /**
   * Send a notification, with the client's wake proof, to the device's mapping (`to`, else each of
   * its local entries, one per family), tagged with the key of the identity generation that
   * registered it; false if none.
   */
  notify(equipmentId: string, requestId: Buffer, wake: Wake, to?: Endpoint & { readonly generation?: number }): boolean;
  readonly counters: Counters<RegistrationCounter>;
}

export function createRegistrationEndpoint(options: RegistrationEndpointOptions): RegistrationEndpoint {
  const { registry, clock, logger, masterKey } = options;
  const windowMs = options.clockWindowMs ?? REGISTER_CLOCK_WINDOW_MS;
  const counters = new Counters(REGISTRATION_COUNTERS);
  const backend = options.backend ?? registry;
  const limiter = options.sourceLimiter;
  const deviceKey = deviceUdpKeys(masterKey);
  const cookies = options.cookieJar ?? createCookieJar(masterKey);
  const probeContext: ProbeContext = {
    deviceKey,
    cookies,
    seen: options.probeNonces ?? new ReplayCache(PROBE_NONCES_MAX),
    clock,
    registry,
    clockWindowMs: windowMs,
  };
  let socket: Socket | null = null;
  let backendFailing = false;
  let pendingWrites = 0;

  const isDenied = (p: { readonly equipmentId: string; readonly generation?: number }): boolean =>
    options.denied?.(p.equipmentId, p.generation ?? 0) ?? false;

  function onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    // Keyed per address for IPv4, per /64 for IPv6 (one subscriber's prefix: rate-limiter.ts sourceKey).
    if (limiter && !limiter.take(sourceKey(rinfo.address))) {
      counters.inc('rateLimited');
      return;
    }
    let parsed;
    try {
      parsed = parseUdpPacket(msg);
    } catch (err) {
      counters.inc('malformed');
      logger.debug({ from: rinfo.address, field: (err as ProtocolError).field }, 'dropped malformed packet');
      return;
    }
    // Before any cryptography: a denied device gets no answer at all (issue 19).
    if ((parsed.packet.type === UDP_TYPE_PROBE || parsed.packet.type === UDP_TYPE_REGISTER) && isDenied(parsed.packet as Register)) {
      counters.inc('denied');
      return;
    }
    if (parsed.packet.type === UDP_TYPE_CLIENT_PROBE && options.clientProbes) {
      counters.inc('clientProbes');
      return reply(answerClientProbe(parsed, rinfo), rinfo);
    }
    if (parsed.packet.type === UDP_TYPE_PROBE) {
      const answer = answerProbe(parsed, rinfo, probeContext);
      if (answer.outcome === 'badTag') return void counters.inc('badTag');
      if (answer.outcome !== 'ack' && answer.outcome !== 'challenge') return void counters.inc('probesDropped');
      counters.inc(answer.outcome === 'ack' ? 'probes' : 'probesChallenged');
      reply(answer.reply, rinfo);
      if (answer.check) {
        counters.inc('mappingChecks');
        send(answer.check.packet, answer.check);
      }
      return;
    }
    if (parsed.packet.type === UDP_TYPE_REFUSE) {
      const refuse = parsed.packet as Refuse;
      if (!verifyTag(parsed, deviceKey(identityName(refuse.equipmentId, refuse.generation)))) return void counters.inc('badTag');
      counters.inc('refusals');
      options.onRefuse?.(refuse.equipmentId, Buffer.from(refuse.requestId), refuse.reason);
      return;
    }
    if (parsed.packet.type !== UDP_TYPE_REGISTER) {
      counters.inc('unexpectedType');
      return;
    }
    const reg = parsed.packet as Register;
    // The key of the generation the device names (identity-name.ts): a leaked file of another generation does not verify.
    const key = deviceKey(reg.generation === undefined ? reg.equipmentId : identityName(reg.equipmentId, reg.generation));
    if (!verifyTag(parsed, key)) {
      // Silent: a forger learns nothing, and we send nothing to an unverified source (P6).
      counters.inc('badTag');
      logger.debug({ equipmentId: reg.equipmentId, from: rinfo.address }, 'dropped registration with a bad tag');
      return;
    }
    const now = clock.now();
    const observed = { address: normalizeAddress(rinfo.address), port: rinfo.port };
    // Each family's mapping is its own registry entry (family-key.ts): an IPv6 registration never moves the IPv4 mapping.
    const id = mappingKey(reg.equipmentId, observed.address);
    if (Math.abs(reg.timestampMs - now) > windowMs) return onSkewed(reg, id, key, now, observed, rinfo);
    const entry: RegistryEntry =
      reg.generation === undefined
        ? { address: observed.address, port: observed.port, lastSeenMs: now, lastTimestampMs: reg.timestampMs }
        : { address: observed.address, port: observed.port, lastSeenMs: now, lastTimestampMs: reg.timestampMs, generation: reg.generation };
    if (backend === registry) {
      // One lookup on the hot path: the same mapping as before is recorded at once; a new one
      // only once its source has echoed a cookie (P6).
      const r = registry.record(id, entry, false);
      if (r.outcome !== 'unverified') return accept(reg, r, key, now, observed, rinfo);
      if (!cookies.valid(reg.cookie, reg.equipmentId, observed, now)) return challenge(reg, key, now, observed, rinfo);
      return accept(reg, registry.record(id, entry), key, now, observed, rinfo);
    }
    // Write on change, the common case: the same mapping, held by this node, written recently
    // enough (and not before Redis was lost or a primary failed over): one compare-and-set in
    // this node's list, no Redis. The shared entry's timestamp may lag by up to the refresh
    // period; see RECORD_LUA for why a replay at another node still cannot take the device over (P1).
    const shared = options.sharedWrites;
    if (shared) {
      const touched = registry.touchShared(id, entry, now - shared.refreshAfterMs, shared.writesValidSinceMs);
      if (touched === 'touched') {
        counters.inc('sharedWriteSkipped');
        return accept(reg, ACCEPTED_IN_PLACE, key, now, observed, rinfo);
      }
      if (touched === 'replayed') return accept(reg, REPLAYED, key, now, observed, rinfo);
    }
    const local = registry.get(id);
    if (local && reg.timestampMs <= local.lastTimestampMs) {
      accept(reg, { outcome: 'replayed' }, key, now, observed, rinfo);
      return;
    }
    if (!(local && sameMapping(local, observed)) && !cookies.valid(reg.cookie, reg.equipmentId, observed, now)) {
      return challenge(reg, key, now, observed, rinfo);
    }
    if (pendingWrites >= MAX_PENDING_REGISTRY_WRITES) {
      counters.inc('overloaded');
      return;
    }
    pendingWrites++;
    Promise.resolve(backend.record(id, entry)).then(
      (r) => {
        pendingWrites--;
        if (backendFailing) {
          backendFailing = false;
          logger.info('registrations reach the shared registry again');
        }
        if (r.outcome === 'accepted') {
          counters.inc('sharedWrites');
          registry.set(id, { ...entry, sharedAtMs: now });
          if (r.previous?.node && r.previous.node !== shared?.nodeId) options.onTakenOver?.(id, r.previous.node, reg.timestampMs);
        }
        if (r.outcome === 'held') {
          // Another node keeps the device fresh (see RECORD_LUA): kept and acknowledged here, not
          // written; the next registration tries again.
          counters.inc('sharedHeld');
          registry.set(id, entry);
          return accept(
            reg,
            { outcome: 'accepted', moved: !(local && sameMapping(local, observed)), previous: undefined },
            key,
            now,
            observed,
            rinfo,
          );
        }
        accept(reg, r, key, now, observed, rinfo);
      },
      (err: unknown) => {
        pendingWrites--;
        counters.inc('registryUnavailable');
        if (!backendFailing) {
          backendFailing = true;
          logger.error({ err: (err as Error).message }, 'shared registry unavailable: registrations are kept at this node only');
        }
        accept(reg, registry.record(id, entry), key, now, observed, rinfo);
      },
    );
  }

  /**
   * A registration outside the clock window. Its source gets the server time (a CLOCK_SKEW ack)
   * only once it has shown that it receives; a new source whose timestamp is newer than the last
   * accepted one gets a cookie (which carries the time too); anything else draws nothing, so a
   * registration replayed from a spoofed source is never answered (P6).
   */
  function onSkewed(reg: Register, id: string, key: Blake2sKey, now: number, observed: Endpoint, rinfo: RemoteInfo): void {
    const local = registry.get(id);
    if ((local && sameMapping(local, observed)) || cookies.valid(reg.cookie, reg.equipmentId, observed, now)) {
      counters.inc('clockSkew');
      // The ack is no larger than the registration (P6) and tells the device the server's time.
      reply(encodeRegisterAck({ status: AckStatus.CLOCK_SKEW, nonce: reg.nonce, serverTimeMs: now, observed }, key), rinfo);
      return;
    }
    if (local && reg.timestampMs <= local.lastTimestampMs) {
      counters.inc('replayed');
      return;
    }
    challenge(reg, key, now, observed, rinfo);
  }

  /** Ask the source to show it receives: a COOKIE (52 bytes, smaller than any registration). */
  function challenge(reg: Register, key: Blake2sKey, now: number, observed: Endpoint, rinfo: RemoteInfo): void {
    counters.inc('challenged');
    reply(encodeCookie({ nonce: reg.nonce, serverTimeMs: now, cookie: cookies.issue(reg.equipmentId, observed, now) }, key), rinfo);
  }

  function accept(reg: Register, r: LocalRecordResult, key: Blake2sKey, now: number, observed: Endpoint, rinfo: RemoteInfo): void {
    if (r.outcome === 'unverified') return challenge(reg, key, now, observed, rinfo);
    if (r.outcome === 'replayed') {
      counters.inc('replayed');
      logger.debug({ equipmentId: reg.equipmentId, from: rinfo.address }, 'dropped registration not newer than the last');
      return;
    }
    const prev = r.previous;
    counters.inc('accepted');
    if (r.moved) {
      counters.inc('addressChanged');
      logger.info(
        {
          equipmentId: reg.equipmentId,
          mapping: `${observed.address}:${observed.port}`,
          previous: prev ? `${prev.address}:${prev.port}` : null,
        },
        'S202 device registered',
      );
    }
    reply(encodeRegisterAck({ status: AckStatus.OK, nonce: reg.nonce, serverTimeMs: now, observed }, key), rinfo);
    options.onRegistered?.(reg.equipmentId, rinfo);
  }

  /** Notifications and mapping checks: a failure is logged. */
  function send(buf: Buffer, to: { address: string; port: number }): void {
    socket?.send(buf, to.port, to.address, (err) => {
      if (err) logger.debug({ err: err.message, to: to.address }, 'udp send failed');
    });
  }

  /**
   * An answer (ack) to the datagram just received. No completion callback: it costs a request
   * object and a callback per packet on the fleet's hot path, and a lost ack is answered again at
   * the device's next registration (a failed send was only ever logged at debug level).
   */
  function reply(buf: Buffer, to: RemoteInfo): void {
    socket?.send(buf, to.port, to.address);
  }

  return {
    counters,
    async start() {
      socket = await openServerUdp(options.host, options.port, onMessage, logger, 'udp socket');
    },
    async stop() {
      const s = socket;
      socket = null;
      if (s) await closeUdp(s);
    },
    address: () => boundAddress(socket),
    notify(equipmentId, requestId, wake, to) {
      if (!socket) return false;
      // Without a target: each mapping this node holds, one per family (family-key.ts).
      const targets = to ? [to] : [registry.get(equipmentId), registry.get(ipv6Key(equipmentId))].filter((e) => e !== undefined);
      if (targets.length === 0) return false;
      for (const t of targets) {
        send(encodeNotify({ requestId, serverTimeMs: clock.now(), wake }, deviceKey(identityName(equipmentId, t.generation))), t);
        counters.inc('notificationsSent');
      }
      return true;
    },
  };
}
