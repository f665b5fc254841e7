/**
 * The client's own NAT mapping behaviour, learnt per request while its TLS connection to the server
 * is made (issue 15): from one UDP socket, a keyless CLIENT_PROBE to the server's registration port
 * and one to its probe port. Two external ports for one socket: the NAT maps per destination
 * (symmetric), so no hole punch from this side can meet, and the request carries
 * PathHint.SYMMETRIC_MAPPING (agent/paths/relay-hint.ts); with no inbound connection either, the
 * device starts the relay with its verdict instead of relay_after_ms later.
 *
 * No time is added to a connect: the probes leave with the TLS connect and one UDP round trip is
 * shorter than a TCP and TLS handshake. When the hint is due (the server's HELLO is in) and an
 * answer is missing, the unanswered probes are sent once more and the check waits at most half of
 * what the TLS connect took (CLIENT_MAPPING_WAIT_MIN_MS..CLIENT_MAPPING_WAIT_MAX_MS). A client
 * without UDP to the server gets no answer, so no hint, and its later requests do not wait at all
 * for CLIENT_MAPPING_UNANSWERED_MS.
 *
 * What a wrong answer costs: "symmetric" for a NAT that could have been punched makes only that
 * connection relayed (the direct attempts still race it). So the hint needs both answers, from the
 * family the request uses, and is not given where the client has a global IPv6 address (a punch over
 * IPv6 passes any IPv4 NAT). "Not symmetric" for a symmetric NAT costs what it did before: the wait.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.js';
import { closeUdp } from '../common/listen.js';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import { CLIENT_PROBE_NONCE_BYTES, UDP_TYPE_CLIENT_PROBE_ACK } from '../protocol/constants.js';
import { encodeClientProbe, parseUdpPacket, type ClientProbeAck } from '../protocol/udp-packets.js';
import { PathHint, type MappingBehaviour } from '../paths/relay-hint.js';

export const CLIENT_MAPPING_WAIT_MIN_MS = 25;
export const CLIENT_MAPPING_WAIT_MAX_MS = 100;
/** After a check that got no answer, requests do not wait for one for this long. */
export const CLIENT_MAPPING_UNANSWERED_MS = 10 * 60_000;
/** A check's socket is closed by this time whatever happens (a request that failed before asking). */
export const CLIENT_MAPPING_LIFETIME_MS = 10_000;

export interface ClientMappingOptions {
  /** The rendezvous server (its TLS host) and its UDP registration and probe ports. */
  readonly host: string;
  readonly udpPort: number;
  readonly probePort: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Whether this host has a global IPv6 address (default: from its interfaces). */
  readonly hasGlobalIPv6?: () => boolean;
}

export interface MappingCheck {
  /**
   * PathHint.SYMMETRIC_MAPPING or 0, for a request over `requestFamily`. Waits at most the bound
   * for missing answers, then closes the check.
   */
  hints(requestFamily: 4 | 6): Promise<number>;
}

export interface ClientMapping {
  /** Send the probes now (with the TLS connect); never throws. */
  begin(signal?: AbortSignal): MappingCheck;
  /** The last check's outcome (tests, logs). */
  last(): MappingBehaviour;
}

/** The server's two UDP ports as the client options give them (`probePorts`). */
export interface ProbePorts {
  readonly udpPort: number;
  readonly probePort: number;
}

function checkPorts(o: ProbePorts): void {
  const problems: string[] = [];
  for (const k of ['udpPort', 'probePort'] as const) {
    const v = o[k];
    if (!(Number.isInteger(v) && v > 0 && v < 65536)) problems.push(`client options: probePorts.${k}: expected 1-65535, found ${v}`);
  }
  if (o.udpPort === o.probePort) problems.push('client options: probePorts: the registration and the probe port must differ');
  if (problems.length) throw new ConfigError(problems, { code: ErrorCodes.OPTIONS_INVALID });
}

/** The client's check, or null without the server's ports (nothing is sent, no hint, no wait). */
export function clientMappingFor(
  ports: ProbePorts | undefined,
  o: Omit<ClientMappingOptions, 'udpPort' | 'probePort'>,
): ClientMapping | null {
  return ports ? createClientMapping({ ...o, udpPort: ports.udpPort, probePort: ports.probePort }) : null;
}

export function createClientMapping(o: ClientMappingOptions): ClientMapping {
  checkPorts(o);
  const clock = o.clock ?? systemClock;
  const globalIPv6 = o.hasGlobalIPv6 ?? hasGlobalIPv6;
  let unansweredAt = -Infinity;
  let last: MappingBehaviour = 'unknown';

  function begin(signal?: AbortSignal): MappingCheck {
    // With a global IPv6 address there is no hint to give (a punch over IPv6 passes IPv4 NATs): nothing sent.
    if (globalIPv6()) return { hints: () => Promise.resolve(0) };
    const startedAt = clock.now();
    const nonces = [randomBytes(CLIENT_PROBE_NONCE_BYTES), randomBytes(CLIENT_PROBE_NONCE_BYTES)] as const;
    const ports = [o.udpPort, o.probePort] as const;
    const seen: (Endpoint | null)[] = [null, null];
    let socket: Socket | null = null;
    let server: { address: string; family: 4 | 6 } | null = null;
    let onAnswer: (() => void) | null = null;
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      clearTimeout(lifetime);
      signal?.removeEventListener('abort', close);
      onAnswer?.();
      if (socket) void closeUdp(socket).catch(() => undefined);
    };
    const lifetime = setTimeout(close, CLIENT_MAPPING_LIFETIME_MS);
    lifetime.unref();
    signal?.addEventListener('abort', close, { once: true });
    const send = (i: 0 | 1): void => {
      if (closed || !socket || !server || seen[i]) return;
      socket.send(encodeClientProbe({ nonce: nonces[i] }), ports[i], server.address, () => undefined);
    };
    const ready = (async () => {
      // Without global IPv6 the request goes over IPv4: probe the server's IPv4 address.
      const address = isIP(o.host) ? o.host : (await lookup(o.host, { family: 4 })).address;
      if (closed) return;
      server = { address: normalizeAddress(address), family: isIP(address) === 6 ? 6 : 4 };
      const s = createSocket(server.family === 6 ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
      socket = s;
      s.on('error', () => undefined);
      s.on('message', (msg, rinfo) => {
        try {
          if (normalizeAddress(rinfo.address) !== server!.address) return;
          const i = ports.indexOf(rinfo.port as (typeof ports)[number]);
          if (i < 0 || seen[i]) return;
          const { packet } = parseUdpPacket(msg);
          if (packet.type !== UDP_TYPE_CLIENT_PROBE_ACK || !(packet as ClientProbeAck).nonce.equals(nonces[i]!)) return;
          seen[i] = {
            address: normalizeAddress((packet as ClientProbeAck).observed.address),
            port: (packet as ClientProbeAck).observed.port,
          };
          if (seen[0] && seen[1]) onAnswer?.();
        } catch {
          /* not an answer of ours: dropped */
        }
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(0, () => resolve());
      });
      send(0);
      send(1);
    })().catch((err: Error) => o.logger.debug({ err: err.message }, 'NAT mapping probes not sent'));

    return {
      async hints(requestFamily) {
        const askedAt = clock.now();
        await Promise.race([ready, delay(CLIENT_MAPPING_WAIT_MAX_MS)]);
        const answered = (): boolean => Boolean(seen[0] && seen[1]);
        const recentlyUnanswered = clock.now() - unansweredAt < CLIENT_MAPPING_UNANSWERED_MS;
        if (!answered() && !closed && !recentlyUnanswered) {
          // Half the TLS connect (two round trips or more) is a round trip at least.
          const boundMs = Math.min(CLIENT_MAPPING_WAIT_MAX_MS, Math.max(CLIENT_MAPPING_WAIT_MIN_MS, (clock.now() - startedAt) / 2));
          send(0);
          send(1);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, boundMs);
            onAnswer = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        const [a, b] = seen;
        const family = server?.family;
        close();
        // How long the request waited for the answers: the check's whole cost to a connect.
        const waitedMs = clock.now() - askedAt;
        if (!a || !b) {
          if (!a && !b) unansweredAt = clock.now();
          note('unknown', { answered: [Boolean(a), Boolean(b)], waitedMs });
          return 0;
        }
        unansweredAt = -Infinity;
        const behaviour: MappingBehaviour = a.port === b.port && a.address === b.address ? 'endpoint-independent' : 'symmetric';
        note(behaviour, { seen: [`${a.address}:${a.port}`, `${b.address}:${b.port}`], waitedMs });
        if (behaviour !== 'symmetric' || family !== requestFamily) return 0;
        return PathHint.SYMMETRIC_MAPPING;
      },
    };
  }

  function note(behaviour: MappingBehaviour, detail: object): void {
    if (behaviour !== last) o.logger.info({ behaviour, was: last, ...detail }, 'our NAT mapping behaviour (server probe ports)');
    last = behaviour;
  }

  return { begin, last: () => last };
}

const delay = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/** A global unicast IPv6 address (2000::/3) on an interface: a punch over IPv6 passes IPv4 NATs. */
export function hasGlobalIPv6(): boolean {
  return Object.values(networkInterfaces()).some((list) =>
    (list ?? []).some((a) => a.family === 'IPv6' && !a.internal && /^[23]/.test(a.address)),
  );
}
