/**
 * What the device's sessions count as it happens (issue 15's review: refusals and broken framing
 * were only logged): the agent's counters, shown by `peerlink-agent status` (docs/sessions.md).
 */
import { Status, type StatusValue } from '../protocol/status.js';

export const SESSION_STREAM_COUNTERS = [
  /** A stream refused by the allow-list (per-stream authorisation), or naming no service. */
  'streamsRefusedService',
  /** A stream refused at the session's stream cap (DEVICE_BUSY). */
  'streamsRefusedBusy',
  /** A stream refused because its local service did not accept the connection. */
  'streamsRefusedUnavailable',
  /** A session ended because the client broke the framing (mux GO_AWAY PROTOCOL_ERROR). */
  'sessionProtocolErrors',
] as const;

export type SessionStreamCounter = (typeof SESSION_STREAM_COUNTERS)[number];

/** The counter of a stream refused with `status`. */
export function refusalCounter(status: StatusValue): SessionStreamCounter {
  if (status === Status.DEVICE_BUSY) return 'streamsRefusedBusy';
  if (status === Status.SERVICE_UNAVAILABLE) return 'streamsRefusedUnavailable';
  return 'streamsRefusedService';
}
