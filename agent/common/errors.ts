/**
 * Every error peerlink raises is a PeerlinkError with a stable `code`.
 * Tests and callers branch on `code`, never on message text.
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'PEERLINK_ERR_CONFIG_INVALID',
  IDENTITY_INVALID: 'PEERLINK_ERR_IDENTITY_INVALID',
  IDENTITY_PERMISSIONS: 'PEERLINK_ERR_IDENTITY_PERMISSIONS',
  PASSWORD_WEAK: 'PEERLINK_ERR_PASSWORD_WEAK',
  OPTIONS_INVALID: 'PEERLINK_ERR_OPTIONS_INVALID',
  PROTOCOL: 'PEERLINK_ERR_PROTOCOL',
  UNKNOWN_DEVICE: 'PEERLINK_ERR_UNKNOWN_DEVICE',
  DEVICE_STALE: 'PEERLINK_ERR_DEVICE_STALE',
  DEVICE_NO_ANSWER: 'PEERLINK_ERR_DEVICE_NO_ANSWER',
  AUTH_FAILED: 'PEERLINK_ERR_AUTH_FAILED',
  REQUEST_EXPIRED: 'PEERLINK_ERR_REQUEST_EXPIRED',
  REQUEST_REPLAYED: 'PEERLINK_ERR_REQUEST_REPLAYED',
  SERVICE_REFUSED: 'PEERLINK_ERR_SERVICE_REFUSED',
  SERVICE_UNAVAILABLE: 'PEERLINK_ERR_SERVICE_UNAVAILABLE',
  DIAL_REFUSED: 'PEERLINK_ERR_DIAL_REFUSED',
  DEVICE_BUSY: 'PEERLINK_ERR_DEVICE_BUSY',
  UNTRUSTED_CERTIFICATE: 'PEERLINK_ERR_UNTRUSTED_CERTIFICATE',
  SERVER_UNREACHABLE: 'PEERLINK_ERR_SERVER_UNREACHABLE',
  PEER_TIMEOUT: 'PEERLINK_ERR_PEER_TIMEOUT',
  TUNNEL_BROKEN: 'PEERLINK_ERR_TUNNEL_BROKEN',
  RATE_LIMITED: 'PEERLINK_ERR_RATE_LIMITED',
  SERVER_DEGRADED: 'PEERLINK_ERR_SERVER_DEGRADED',
  /** The device's owner took this client's access away (issue 19). */
  ACCESS_REVOKED: 'PEERLINK_ERR_ACCESS_REVOKED',
  /** The operator denied the device (deny list, issue 19). */
  DEVICE_DENIED: 'PEERLINK_ERR_DEVICE_DENIED',
  /** An owner control the device refused (not paired, unknown client, ...). */
  OWNER_REFUSED: 'PEERLINK_ERR_OWNER_REFUSED',
  ABORTED: 'PEERLINK_ERR_ABORTED',
  /** A gateway (UPnP) answered with an error, or not as the protocol says. */
  UPNP_FAILED: 'PEERLINK_ERR_UPNP_FAILED',
  /** A gateway (NAT-PMP) refused a request (its result code is kept), did not answer in time, or the socket failed. */
  NATPMP_FAILED: 'PEERLINK_ERR_NATPMP_FAILED',
  /** A peer's answer exceeded the bytes we read of it; the read was cut off there. */
  RESPONSE_TOO_LARGE: 'PEERLINK_ERR_RESPONSE_TOO_LARGE',
  /** A secret file (password, private key) that group or others may read. */
  SECRET_FILE_PERMISSIONS: 'PEERLINK_ERR_SECRET_FILE_PERMISSIONS',
  INTERNAL: 'PEERLINK_ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class PeerlinkError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'PeerlinkError';
  }
}

/** A settings or identity file, or an options object, failed validation. */
export class ConfigError extends PeerlinkError {
  /** Every problem found, each naming the file and key path. */
  readonly problems: readonly string[];
  constructor(problems: readonly string[], options?: { cause?: unknown; code?: ErrorCode }) {
    super(options?.code ?? ErrorCodes.CONFIG_INVALID, problems.join('\n'), options);
    this.problems = Object.freeze([...problems]);
    this.name = 'ConfigError';
  }
}

/** A packet or frame that does not parse; the message names the field. */
export class ProtocolError extends PeerlinkError {
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.PROTOCOL, `${field}: ${message}`, options);
    this.field = field;
    this.name = 'ProtocolError';
  }
}

export function isPeerlinkError(err: unknown, code?: ErrorCode): err is PeerlinkError {
  return err instanceof PeerlinkError && (code === undefined || err.code === code);
}

export function abortError(signal: AbortSignal): PeerlinkError {
  return new PeerlinkError(ErrorCodes.ABORTED, 'operation aborted', { cause: signal.reason });
}
