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
 * P6 holds: nothing is sent for a bad tag; the ack and the check are each smaller than the probe.
 */
import { boundAddress, closeUdp, openServerUdp } from '../common/listen.js';
import type { RemoteInfo, Socket } from 'node:dgram';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { Counters } from '../common/counters.js';
import { normalizeAddress } from '../protocol/address.js';
import { PROBE_FLAG_CHECK_MAPPING, PROBE_WITH_CHECK_MIN_BYTES, REGISTER_CLOCK_WINDOW_MS, UDP_TYPE_PROBE } from '../protocol/constants.js';
import type { Blake2sKey } from '../protocol/blake2s.js';
import { AckStatus, deviceUdpKeys, encodeMappingCheck, encodeRegisterAck, parseUdpPacket, verifyTag, type Parsed, type Probe, type UdpPacket } from '../protocol/udp-packets.js';
import type { Registry } from './registry.js';

export const PROBE_COUNTERS = ['probes', 'badTag', 'malformed', 'mappingChecks'] as const;

export interface ProbeAnswer {
  readonly ack: Buffer;
  /** A MAPPING_CHECK and where to send it (the registered mapping), when asked for and known. */
  readonly check?: { readonly packet: Buffer; readonly address: string; readonly port: number };
}

export interface ProbeContext {
  /** The device's registration key, prepared (udp-packets.ts `deviceUdpKeys`). */
  readonly deviceKey: (equipmentId: string) => Blake2sKey;
  readonly clock: Clock;
  readonly registry?: Registry;
  readonly clockWindowMs?: number;
}

/** The answer to a parsed PROBE, or null (bad tag: silence). */
export function answerProbe(parsed: Parsed<UdpPacket>, from: RemoteInfo, ctx: ProbeContext): ProbeAnswer | null {
  const probe = parsed.packet as Probe;
  const key = ctx.deviceKey(probe.equipmentId);
  if (!verifyTag(parsed, key)) return null;
  const now = ctx.clock.now();
  const skewed = Math.abs(probe.timestampMs - now) > (ctx.clockWindowMs ?? REGISTER_CLOCK_WINDOW_MS);
  const observed = { address: normalizeAddress(from.address), port: from.port };
  const ack = encodeRegisterAck({ status: skewed ? AckStatus.CLOCK_SKEW : AckStatus.OK, nonce: probe.nonce, serverTimeMs: now, observed }, key);
  // The check goes only to the mapping this ID registered, and only for a probe at least as
  // large as the ack and the check together: no amplification, no reflection elsewhere (P6).
  const bigEnough = parsed.datagram.length >= PROBE_WITH_CHECK_MIN_BYTES;
  if (skewed || (probe.flags & PROBE_FLAG_CHECK_MAPPING) === 0 || !bigEnough || !ctx.registry) return { ack };
  const entry = ctx.registry.get(probe.equipmentId);
  if (!entry) return { ack };
  return { ack, check: { packet: encodeMappingCheck({ nonce: probe.nonce, serverTimeMs: now }, key), address: entry.address, port: entry.port } };
}

export interface ProbeEndpoint {
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { address: string; port: number };
  readonly counters: Counters<(typeof PROBE_COUNTERS)[number]>;
}

/** The second UDP port: answers probes only (never sends mapping checks, never touches the registry). */
export function createProbeEndpoint(o: { host: string; port: number; masterKey: Buffer; clock: Clock; logger: Logger; clockWindowMs?: number }): ProbeEndpoint {
  const counters = new Counters(PROBE_COUNTERS);
  let socket: Socket | null = null;
  const deviceKey = deviceUdpKeys(o.masterKey);
  const onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    let parsed;
    try {
      parsed = parseUdpPacket(msg);
    } catch {
      counters.inc('malformed');
      return;
    }
    if (parsed.packet.type !== UDP_TYPE_PROBE) {
      counters.inc('malformed');
      return;
    }
    const answer = answerProbe(parsed, rinfo, { deviceKey, clock: o.clock, ...(o.clockWindowMs ? { clockWindowMs: o.clockWindowMs } : {}) });
    if (!answer) {
      counters.inc('badTag');
      return;
    }
    counters.inc('probes');
    socket?.send(answer.ack, rinfo.port, rinfo.address, (err) => {
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
