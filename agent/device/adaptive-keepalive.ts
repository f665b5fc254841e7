/**
 * The registrar's adaptive keepalive (keepalive-policy.ts decides; this file measures).
 *
 * Two signals tell whether the NAT kept the registration's mapping over an idle interval:
 *  - the ack's observed port changed (same address): the mapping was lost and re-created. Free,
 *    but blind on routers that re-create a lost mapping on the same port (Linux and many home
 *    routers preserve the source port), so it cannot be the only one;
 *  - a mapping check: before refreshing, a PROBE from a second socket asks the server to send a
 *    MAPPING_CHECK to the registered mapping. If it arrives at the registration socket, the
 *    mapping survived the idle interval; if the server answered the probe but no check arrived,
 *    it did not. If the probe itself got no answer, the round tells nothing (loss, not NAT).
 */
import type { Logger } from 'pino';
import { Counters } from '../common/counters.js';
import { openProbeSocket, type ProbeSocket } from '../rendezvous/udp-probe.js';
import type { Endpoint } from '../protocol/address.js';
import { PROBE_FLAG_CHECK_MAPPING, REGISTER_ACK_TIMEOUT_MS } from '../protocol/constants.js';
import { randomBytes } from 'node:crypto';
import { REGISTER_NONCE_BYTES } from '../protocol/udp-packets.js';
import { createKeepalivePolicy, type KeepaliveBounds, type KeepalivePolicy, type KeepaliveState } from './keepalive-policy.js';

export const KEEPALIVE_COUNTERS = ['probesSent', 'checksArrived', 'checksMissing', 'checksInconclusive', 'portChanged'] as const;
/** How long a mapping check may take to arrive after the probe's answer. */
export const MAPPING_CHECK_WAIT_MS = 1_000;

export interface Keepalive {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The refresh is due: check the mapping first if the policy wants to. */
  beforeRefresh(server: Endpoint): Promise<void>;
  /** An ack arrived: learn from its observed endpoint; returns the idle interval until the next refresh. */
  afterAck(observed: Endpoint): number;
  /** A MAPPING_CHECK arrived at the registration socket. */
  onMappingCheck(nonce: Buffer): void;
  state(): KeepaliveState;
  readonly counters: Counters<(typeof KEEPALIVE_COUNTERS)[number]>;
}

export interface AdaptiveKeepaliveOptions extends KeepaliveBounds {
  readonly equipmentId: string;
  /** The identity's generation (identity-name.ts); absent: 0. */
  readonly generation?: number;
  readonly registrationKey: Buffer;
  readonly logger: Logger;
  readonly onState?: (s: KeepaliveState) => void;
}

export function createAdaptiveKeepalive(o: AdaptiveKeepaliveOptions): Keepalive {
  const policy: KeepalivePolicy = createKeepalivePolicy(o);
  const counters = new Counters(KEEPALIVE_COUNTERS);
  let probe: ProbeSocket | null = null;
  let lastObserved: Endpoint | null = null;
  let idleMs = 0;
  let checkedThisRound = false;
  const arrived = new Map<string, () => void>();

  const report = (what: string): void => {
    const s = policy.state();
    o.logger.info({ keepalive: s }, what);
    o.onState?.(s);
  };

  return {
    counters,
    state: () => policy.state(),
    async start() {
      probe = await openProbeSocket({
        equipmentId: o.equipmentId,
        ...(o.generation ? { generation: o.generation } : {}),
        registrationKey: o.registrationKey,
      });
    },
    async stop() {
      const p = probe;
      probe = null;
      await p?.close();
    },
    async beforeRefresh(server) {
      checkedThisRound = false;
      if (!probe || lastObserved === null || !policy.roundWantsCheck()) return;
      let seen = false;
      let wake: (() => void) | null = null;
      // Every nonce the probe goes out with (a cookie answer makes it send again with a new one).
      const keys: string[] = [];
      const watch = (n: Buffer): void => {
        const key = n.toString('hex');
        keys.push(key);
        arrived.set(key, () => {
          seen = true;
          wake?.();
        });
      };
      counters.inc('probesSent');
      const answer = await probe.probe(server, {
        flags: PROBE_FLAG_CHECK_MAPPING,
        tries: 1,
        timeoutMs: REGISTER_ACK_TIMEOUT_MS,
        nonce: randomBytes(REGISTER_NONCE_BYTES),
        onNonce: watch,
      });
      if (answer !== null && !seen && probe) {
        // The check left the server with the answer; give it a moment to cross the NAT.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, MAPPING_CHECK_WAIT_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      const checkArrived = seen;
      for (const key of keys) arrived.delete(key);
      if (answer === null && !checkArrived) {
        counters.inc('checksInconclusive');
        return;
      }
      checkedThisRound = true;
      counters.inc(checkArrived ? 'checksArrived' : 'checksMissing');
      const before = policy.state();
      policy.record(idleMs, checkArrived);
      const after = policy.state();
      if (!checkArrived) report(`keepalive: the NAT forgot the mapping within ${Math.round(idleMs / 1000)} s; refreshing more often`);
      else if (after.phase === 'learnt' && before.phase !== 'learnt')
        report(`keepalive: learnt; refreshing every ${Math.round(after.nextIntervalMs / 1000)} s`);
    },
    afterAck(observed) {
      if (lastObserved && observed.address === lastObserved.address && observed.port !== lastObserved.port) {
        counters.inc('portChanged');
        // The check of this round, if any, already said so; otherwise this is the first sign.
        if (!checkedThisRound) {
          policy.record(idleMs, false);
          report(`keepalive: the NAT gave a new port after ${Math.round(idleMs / 1000)} s idle; refreshing more often`);
        }
      }
      lastObserved = observed;
      idleMs = policy.nextIntervalMs();
      return idleMs;
    },
    onMappingCheck(nonce) {
      arrived.get(nonce.toString('hex'))?.();
    },
  };
}
