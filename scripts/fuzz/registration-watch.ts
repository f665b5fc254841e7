/**
 * Lost registrations of the real agent over a window, counted at both ends:
 *  - sent: the agent's "S201 registration sent" lines (debug level, one per registration);
 *  - accepted: the server's `peerlink_registrations_total{outcome="accepted"}` (only the real agent
 *    can produce these: the fuzzer never sends a fresh registration under a real key);
 *  - noAck: the agent's "no acknowledgement from the rendezvous server" warnings (an ack lost on the
 *    way back, e.g. in a flooded socket buffer; one warning per outage).
 * lost = max(sent - accepted, noAck) over the window. A registration in flight at either edge would
 * skew the count, so a snapshot waits until the newest one is ACK_SETTLE_MS old.
 */
import type { SystemUnderFuzz } from './programs.js';
import { fetchMetrics, registrationOutcomes } from './server-metrics.js';

export const SENT_MSG = 'S201 registration sent';
export const NO_ACK_MSG = 'no acknowledgement from the rendezvous server';
/** Loopback round trip plus the server's work, with a wide margin. */
const ACK_SETTLE_MS = 500;

export interface RegistrationSnapshot {
  readonly sent: number;
  readonly accepted: number;
  readonly noAck: number;
}

export interface RegistrationLoss extends RegistrationSnapshot {
  readonly lost: number;
}

export async function snapshotRegistrations(sys: SystemUnderFuzz): Promise<RegistrationSnapshot> {
  const newest = sys.agentLines(SENT_MSG).at(-1);
  const ageMs = typeof newest?.time === 'number' ? Date.now() - newest.time : Infinity;
  if (ageMs < ACK_SETTLE_MS) await new Promise((r) => setTimeout(r, ACK_SETTLE_MS - ageMs));
  const accepted = registrationOutcomes(await fetchMetrics(sys.metricsPort)).accepted ?? 0;
  return Object.freeze({ sent: sys.agentLines(SENT_MSG).length, accepted, noAck: sys.agentLines(NO_ACK_MSG).length });
}

export function registrationLoss(before: RegistrationSnapshot, after: RegistrationSnapshot): RegistrationLoss {
  const sent = after.sent - before.sent;
  const accepted = after.accepted - before.accepted;
  const noAck = after.noAck - before.noAck;
  return Object.freeze({ sent, accepted, noAck, lost: Math.max(sent - accepted, noAck, 0) });
}
