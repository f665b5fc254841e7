/**
 * The device's own NAT mapping behaviour, learnt as diagnose learns it (issue 15): from one UDP
 * socket, a probe to the server's registration port and one to its probe port. The same external
 * port towards both: endpoint-independent mapping (a hole punch from this side can meet);
 * different ones: address-and-port-dependent (symmetric), and a punch from this side cannot meet a
 * peer that accepts nothing (agent/paths/relay-hint.ts). Without the server's probe port (0) or
 * without answers it stays 'unknown', which changes nothing.
 *
 * UDP stands in for TCP: home NATs map both alike (Linux masquerade, the lab's "symmetric" is
 * `fully-random` for both). Learnt at start and every MAPPING_RECHECK_MS, since a router can change.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { openProbeSocket } from '../rendezvous/udp-probe.js';
import type { MappingBehaviour } from '../paths/relay-hint.js';

export const MAPPING_RECHECK_MS = 30 * 60_000;
/** A check that got no answer is tried again this soon, MAPPING_RETRIES times, then every MAPPING_RECHECK_MS. */
export const MAPPING_RETRY_MS = 10_000;
export const MAPPING_RETRIES = 3;

export interface MappingLearnerOptions {
  readonly equipmentId: string;
  readonly generation?: number;
  readonly registrationKey: Buffer;
  readonly serverHost: string;
  readonly udpPort: number;
  /** The server's probe port; 0: none, the behaviour stays unknown. */
  readonly probePort: number;
  /** Server time minus local time, as the registrar learnt it. */
  readonly serverOffsetMs: () => number;
  readonly logger: Logger;
}

export interface MappingLearner {
  current(): MappingBehaviour;
  start(): void;
  stop(): void;
}

/** One check: the behaviour, or 'unknown' when either port did not answer. */
export async function checkMappingBehaviour(o: MappingLearnerOptions): Promise<MappingBehaviour> {
  if (!o.probePort) return 'unknown';
  const address = isIP(o.serverHost) ? o.serverHost : (await lookup(o.serverHost, { family: 4 })).address;
  const sock = await openProbeSocket({
    equipmentId: o.equipmentId,
    ...(o.generation ? { generation: o.generation } : {}),
    registrationKey: o.registrationKey,
    family: isIP(address) === 6 ? 6 : 4,
  });
  try {
    sock.setOffsetMs(o.serverOffsetMs());
    const a = await sock.probe({ address, port: o.udpPort }, { tries: 2, timeoutMs: 1000 });
    if (!a) return 'unknown';
    const b = await sock.probe({ address, port: o.probePort }, { tries: 2, timeoutMs: 1000 });
    if (!b) return 'unknown';
    return a.observed.port === b.observed.port && a.observed.address === b.observed.address ? 'endpoint-independent' : 'symmetric';
  } finally {
    await sock.close();
  }
}

export function createMappingLearner(o: MappingLearnerOptions): MappingLearner {
  let behaviour: MappingBehaviour = 'unknown';
  let timer: NodeJS.Timeout | undefined;
  let stopped = true;
  let retries = 0;
  const run = (): void => {
    checkMappingBehaviour(o)
      .then((b) => {
        if (b !== behaviour) o.logger.info({ behaviour: b, was: behaviour }, 'NAT mapping behaviour learnt (server probe port)');
        behaviour = b;
      })
      .catch((err: Error) => o.logger.debug({ err: err.message }, 'NAT mapping check failed'))
      .finally(() => {
        if (stopped) return;
        const retry = behaviour === 'unknown' && retries++ < MAPPING_RETRIES;
        if (!retry) retries = 0;
        schedule(retry ? MAPPING_RETRY_MS : MAPPING_RECHECK_MS);
      });
  };
  const schedule = (ms: number): void => {
    timer = setTimeout(run, ms);
    timer.unref();
  };
  return {
    current: () => behaviour,
    start() {
      if (!o.probePort || !stopped) return;
      stopped = false;
      // At once: the probes carry server time from the registrar's offset (0 before its first ack,
      // right where the clocks agree); a check that gets no answer is tried again soon.
      schedule(0);
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
