/**
 * Outcome codes carried in CONNECT_RESULT (server -> client) and DEVICE_VERDICT (device -> server).
 * Each maps to one error code and one CLI exit code, so a user can tell the cases apart.
 */
import { ErrorCodes, type ErrorCode } from '../common/errors.js';

export const Status = {
  OK: 0,
  UNKNOWN_DEVICE: 1,
  DEVICE_STALE: 2,
  DEVICE_NO_ANSWER: 3,
  AUTH_FAILED: 4,
  REQUEST_EXPIRED: 5,
  REQUEST_REPLAYED: 6,
  SERVICE_REFUSED: 7,
  DIAL_REFUSED: 8,
  BAD_REQUEST: 9,
  DEVICE_BUSY: 10,
  INTERNAL: 11,
  SERVICE_UNAVAILABLE: 12,
  RATE_LIMITED: 13,
  SERVER_DEGRADED: 14,
  /** The device's owner took this client's access away (revoked it, changed the password, reset; issue 19). */
  ACCESS_REVOKED: 15,
  /** The operator put the device on the deny list (issue 19). */
  DEVICE_DENIED: 16,
} as const;
export type StatusValue = (typeof Status)[keyof typeof Status];

const VALUES = new Set<number>(Object.values(Status));
export function isStatus(v: number): v is StatusValue {
  return VALUES.has(v);
}

export const STATUS_ERROR: Readonly<Record<StatusValue, ErrorCode | null>> = Object.freeze({
  [Status.OK]: null,
  [Status.UNKNOWN_DEVICE]: ErrorCodes.UNKNOWN_DEVICE,
  [Status.DEVICE_STALE]: ErrorCodes.DEVICE_STALE,
  [Status.DEVICE_NO_ANSWER]: ErrorCodes.DEVICE_NO_ANSWER,
  [Status.AUTH_FAILED]: ErrorCodes.AUTH_FAILED,
  [Status.REQUEST_EXPIRED]: ErrorCodes.REQUEST_EXPIRED,
  [Status.REQUEST_REPLAYED]: ErrorCodes.REQUEST_REPLAYED,
  [Status.SERVICE_REFUSED]: ErrorCodes.SERVICE_REFUSED,
  [Status.DIAL_REFUSED]: ErrorCodes.DIAL_REFUSED,
  [Status.BAD_REQUEST]: ErrorCodes.PROTOCOL,
  [Status.DEVICE_BUSY]: ErrorCodes.DEVICE_BUSY,
  [Status.INTERNAL]: ErrorCodes.INTERNAL,
  [Status.SERVICE_UNAVAILABLE]: ErrorCodes.SERVICE_UNAVAILABLE,
  [Status.RATE_LIMITED]: ErrorCodes.RATE_LIMITED,
  [Status.SERVER_DEGRADED]: ErrorCodes.SERVER_DEGRADED,
  [Status.ACCESS_REVOKED]: ErrorCodes.ACCESS_REVOKED,
  [Status.DEVICE_DENIED]: ErrorCodes.DEVICE_DENIED,
});

export const STATUS_TEXT: Readonly<Record<StatusValue, string>> = Object.freeze({
  [Status.OK]: 'accepted',
  [Status.UNKNOWN_DEVICE]: 'no device with this equipment ID is registered',
  [Status.DEVICE_STALE]: 'the device has stopped registering (offline?)',
  [Status.DEVICE_NO_ANSWER]: 'the device was notified but did not answer in time',
  [Status.AUTH_FAILED]: 'the device refused the password',
  [Status.REQUEST_EXPIRED]: 'the device found the request too old or from the future (check clocks)',
  [Status.REQUEST_REPLAYED]: 'the device has already seen this request',
  [Status.SERVICE_REFUSED]: 'the device does not offer this service',
  [Status.DIAL_REFUSED]: "the device's settings forbid dialling the client's address",
  [Status.BAD_REQUEST]: 'the request was malformed',
  [Status.DEVICE_BUSY]: 'the device is busy; try again shortly',
  [Status.INTERNAL]: 'internal error',
  [Status.SERVICE_UNAVAILABLE]: 'the device offers this service but it is not running',
  [Status.RATE_LIMITED]: 'too many requests from your address or for this device; try again later',
  [Status.SERVER_DEGRADED]: 'the server cannot do this now (shared registry unreachable, or shutting down); try again shortly',
  [Status.ACCESS_REVOKED]: "the device's owner has taken this client's access away (revoked, password changed or reset); pair again",
  [Status.DEVICE_DENIED]: 'the operator has denied this device service (deny list)',
});
