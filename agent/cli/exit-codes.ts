/** One exit code per failure a user must tell apart (documented in docs/usage.md). */
import { ErrorCodes, type ErrorCode } from '../common/errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export const EXIT_CODES: Readonly<Partial<Record<ErrorCode, number>>> = Object.freeze({
  [ErrorCodes.CONFIG_INVALID]: 3,
  [ErrorCodes.IDENTITY_INVALID]: 3,
  [ErrorCodes.IDENTITY_PERMISSIONS]: 3,
  [ErrorCodes.SECRET_FILE_PERMISSIONS]: 3,
  [ErrorCodes.OPTIONS_INVALID]: EXIT_USAGE,
  [ErrorCodes.UNKNOWN_DEVICE]: 10,
  [ErrorCodes.DEVICE_STALE]: 11,
  [ErrorCodes.DEVICE_NO_ANSWER]: 12,
  [ErrorCodes.AUTH_FAILED]: 13,
  [ErrorCodes.REQUEST_EXPIRED]: 14,
  [ErrorCodes.REQUEST_REPLAYED]: 14,
  [ErrorCodes.UNTRUSTED_CERTIFICATE]: 15,
  [ErrorCodes.SERVICE_REFUSED]: 16,
  [ErrorCodes.SERVICE_UNAVAILABLE]: 17,
  [ErrorCodes.SERVER_UNREACHABLE]: 18,
  [ErrorCodes.PEER_TIMEOUT]: 19,
  [ErrorCodes.DIAL_REFUSED]: 20,
  [ErrorCodes.DEVICE_BUSY]: 21,
  [ErrorCodes.TUNNEL_BROKEN]: 22,
  [ErrorCodes.RATE_LIMITED]: 23,
  [ErrorCodes.SERVER_DEGRADED]: 24,
  [ErrorCodes.ACCESS_REVOKED]: 25,
  [ErrorCodes.DEVICE_DENIED]: 26,
  [ErrorCodes.OWNER_REFUSED]: 27,
});

export function exitCodeFor(err: unknown): number {
  const code = (err as { code?: ErrorCode } | null)?.code;
  return (code && EXIT_CODES[code]) ?? EXIT_FAILURE;
}
