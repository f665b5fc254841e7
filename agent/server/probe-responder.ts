/**
 * Answers PROBE packets (protocol README, "Probes"): a device-authenticated "what address do you
 * see, and what time is it?" that changes nothing at the server (no registry entry, no replay
 * state), so the technician's `peerlink-agent diagnose` can run beside the running agent.
 *
 * On the registration port a probe may also ask for a MAPPING_CHECK to the mapping registered
 * for its ID: the agent's keepalive learning uses it to test whether its NAT still holds the
 * mapping after an idle interval, without refreshing it first.
 *
 * On the probe port (server setting `probe.port`, a second port) probes are only answered:
 * comparing the external port seen by both ports tells a symmetric NAT from an
 * endpoint-independent one.
 *
 * Both ports also answer a client's keyless CLIENT_PROBE when the probe port is on (issue 15,
 * agent/nat/client-mapping.ts): its source as seen, once, to that source only, in fewer bytes than
 * the probe, with no state kept. That is what a COOKIE already is to an unproven source (the
 * answer names nothing but the source's own address), so a spoofed probe reflects less than it
 * cost, within the port's per-source limit, as for every other packet.
 *
 * P6 holds: nothing is sent for a bad tag, a replayed nonce or a stale probe from a source that
 * has not echoed its cookie; the ack and the check are each smaller than the probe, and a source
 * must echo a cookie (cookie-jar.ts) before it gets an ack.
 */
import { identityName } from '../protocol/identity-name.js';
import { boundAddress, closeUdp, openServerUdp } from '../common/listen.js';
import type { RemoteInfo, Socket } from 'node:dgram';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import { ReplayCache } from '../common/replay-cache.js';
import { normalizeAddress } from '../protocol/address.js';
import {
  PROBE_FLAG_CHECK_MAPPING,
  PROBE_WITH_CHECK_MIN_BYTES,
  REGISTER_CLOCK_WINDOW_MS,
  UDP_TYPE_CLIENT_PROBE,
  UDP_TYPE_PROBE,
} from '../protocol/constants.js';
import type { Blake2sKey } from '../protocol/blake2s.js';
import {
  AckStatus,
  deviceUdpKeys,
  encodeClientProbeAck,
  encodeCookie,
  encodeMappingCheck,
  encodeRegisterAck,
  parseUdpPacket,
  verifyTag,
  type ClientProbe,
  type Parsed,
  type Probe,
  type UdpPacket,
} from '../protocol/udp-packets.js';
import { createCookieJar, type CookieJar } from './cookie-jar.js';
import { sourceKey, type RateLimiter } from './rate-limiter.js';
import { mappingKey } from './family-key.js';
import type { Registry } from './registry.js';

export const PROBE_COUNTERS = [
  'probes',
  'challenged',
  'replayed',
  'stale',
  'badTag',
  'malformed',
  'rateLimited',
  'mappingChecks',
  'clientProbes',
] as const;
/** Probe nonces remembered at once per port (a minute's worth); when full, probes go unanswered (fail closed). */
export const PROBE_NONCES_MAX = 100_000;

export type ProbeAnswer =
  | {
      readonly outcome: 'ack' | 'challenge';
      /** An ack, or a COOKIE for a source not yet shown to receive. */
      readonly reply: Buffer;
      /** A MAPPING_CHECK and where to send it (the registered mapping), when asked for and known. */
      readonly check?: { readonly packet: Buffer; readonly address: string; readonly port: number };
    }
  /** Nothing is sent: a bad tag, a nonce seen before, or a stale probe from an unproven source. */
  | { readonly outcome: 'badTag' | 'replayed' | 'stale' };

export interface ProbeContext {
  /** The device's registration key, prepared (udp-packets.ts `deviceUdpKeys`). */
  readonly deviceKey: (equipmentId: string) => Blake2sKey;
  readonly cookies: CookieJar;
  /** Probe nonces seen within the clock window. */
  readonly seen: ReplayCache;
  readonly clock: Clock;
  readonly registry?: Registry;
  readonly clockWindowMs?: number;
}

/**
 * The answer to a parsed PROBE (P6): only a source that echoes its cookie gets an ack (and a
 * mapping check may go to the registered mapping); a fresh probe without one gets a COOKIE; a
 * replayed nonce, a stale probe from an unproven source and a bad tag get nothing.
 */
export function answerProbe(parsed: Parsed<UdpPacket>, from: RemoteInfo, ctx: ProbeContext): ProbeAnswer {
  const probe = parsed.packet as Probe;
  const key = ctx.deviceKey(identityName(probe.equipmentId, probe.generation));
  if (!verifyTag(parsed, key)) return { outcome: 'badTag' };
  const now = ctx.clock.now();
  const windowMs = ctx.clockWindowMs ?? REGISTER_CLOCK_WINDOW_MS;
  const skewed = Math.abs(probe.timestampMs - now) > windowMs;
  const observed = { address: normalizeAddress(from.address), port: from.port };
  const proven = ctx.cookies.valid(probe.cookie, probe.equipmentId, observed, now);
  // A stale probe's nonce cannot be remembered for ever: only a proven source hears about its clock.
  if (skewed && !proven) return { outcome: 'stale' };
  if (!skewed && ctx.seen.check(probe.nonce, Math.max(probe.timestampMs, now) + windowMs, now) !== 'fresh') return { outcome: 'replayed' };
  if (!proven) {
    return {
      outcome: 'challenge',
      reply: encodeCookie({ nonce: probe.nonce, serverTimeMs: now, cookie: ctx.cookies.issue(probe.equipmentId, observed, now) }, key),
    };
  }
  const reply = encodeRegisterAck(
    { status: skewed ? AckStatus.CLOCK_SKEW : AckStatus.OK, nonce: probe.nonce, serverTimeMs: now, observed },
    key,
  );
  // The check goes only to the mapping this ID registered, and only for a probe at least as
  // large as the ack and the check together: no amplification, no reflection elsewhere (P6).
  const bigEnough = parsed.datagram.length >= PROBE_WITH_CHECK_MIN_BYTES;
  if (skewed || (probe.flags & PROBE_FLAG_CHECK_MAPPING) === 0 || !bigEnough || !ctx.registry) return { outcome: 'ack', reply };
  // The mapping of the probe's own family (family-key.ts).
  const entry = ctx.registry.get(mappingKey(probe.equipmentId, observed.address));
  if (!entry) return { outcome: 'ack', reply };
  return {
    outcome: 'ack',
    reply,
    check: { packet: encodeMappingCheck({ nonce: probe.nonce, serverTimeMs: now }, key), address: entry.address, port: entry.port },
  };
}

/** The answer to a client's keyless probe: the source as seen, smaller than the probe (P6). */
export function answerClientProbe(parsed: Parsed<UdpPacket>, from: RemoteInfo): Buffer {
  const probe = parsed.packet as ClientProbe;
  return encodeClientProbeAck({ nonce: probe.nonce, observed: { address: normalizeAddress(from.address), port: from.port } });
}

/** Counts an answer's outcome; true when something is to be sent. */
export function countProbe(
  answer: ProbeAnswer,
  counters: Counters<(typeof PROBE_COUNTERS)[number]>,
): answer is Extract<ProbeAnswer, { reply: Buffer }> {
  counters.inc(answer.outcome === 'ack' ? 'probes' : answer.outcome === 'challenge' ? 'challenged' : answer.outcome);
  return answer.outcome === 'ack' || answer.outcome === 'challenge';
}

export interface ProbeEndpoint {
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { address: string; port: number };
  readonly counters: Counters<(typeof PROBE_COUNTERS)[number]>;
}

/** The second UDP port: answers probes only (never sends mapping checks, never touches the registry). */
export function createProbeEndpoint(o: {
  host: string;
  port: number;
  masterKey: Buffer;
  clock: Clock;
  logger: Logger;
  clockWindowMs?: number;
  /** Per source address, before any cryptography (P6: every UDP port has one). */
  sourceLimiter?: RateLimiter;
  /** Probe nonces seen, shared with the registration port so a probe replayed to the other port is known too. */
  seen?: ReplayCache;
  /** The operator's deny list (deny-list.ts): a denied device's probes get no answer. */
  denied?: (equipmentId: string, generation: number) => boolean;
  /** Answer clients' keyless probes (default true: this port exists for mapping checks). */
  clientProbes?: boolean;
}): ProbeEndpoint {
  const counters = new Counters(PROBE_COUNTERS);
  let socket: Socket | null = null;
  const ctx: ProbeContext = {
    deviceKey: deviceUdpKeys(o.masterKey),
    cookies: createCookieJar(o.masterKey),
    seen: o.seen ?? new ReplayCache(PROBE_NONCES_MAX),
    clock: o.clock,
    ...(o.clockWindowMs ? { clockWindowMs: o.clockWindowMs } : {}),
  };
  const onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    if (o.sourceLimiter && !o.sourceLimiter.take(sourceKey(rinfo.address))) {
      counters.inc('rateLimited');
      return;
    }
    let parsed;
    try {
      parsed = parseUdpPacket(msg);
    } catch {
      counters.inc('malformed');
      return;
    }
    if (parsed.packet.type === UDP_TYPE_CLIENT_PROBE && o.clientProbes !== false) {
      counters.inc('clientProbes');
      socket?.send(answerClientProbe(parsed, rinfo), rinfo.port, rinfo.address, () => undefined);
      return;
    }
    if (parsed.packet.type !== UDP_TYPE_PROBE) {
      counters.inc('malformed');
      return;
    }
    const named = parsed.packet as { equipmentId: string; generation?: number };
    if (o.denied?.(named.equipmentId, named.generation ?? 0)) return;
    const answer = answerProbe(parsed, rinfo, ctx);
    if (!countProbe(answer, counters)) return;
    socket?.send(answer.reply, rinfo.port, rinfo.address, (err) => {
      if (err) o.logger.debug({ err: err.message }, 'probe answer not sent');
    });
  };
  return {
    counters,
    async start() {
      socket = await openServerUdp(o.host, o.port, onMessage, o.logger, 'probe socket');
    },
    async stop() {
      const s = socket;
      socket = null;
      if (s) await closeUdp(s);
    },
    address: () => boundAddress(socket),
  };
}
