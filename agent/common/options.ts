/** Validation of options objects at component boundaries: unknown keys rejected, then frozen. */
import { ConfigError, ErrorCodes } from './errors.js';

export function rejectUnknownKeys(what: string, options: object, allowed: readonly string[]): void {
  const unknown = Object.keys(options).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new ConfigError(
      unknown.map((k) => `${what}: ${k}: unknown option (expected one of ${allowed.join(', ')})`),
      { code: ErrorCodes.OPTIONS_INVALID },
    );
  }
}

export function requireOption<T>(what: string, key: string, value: T | undefined): T {
  if (value === undefined || value === null) {
    throw new ConfigError([`${what}: ${key}: required`], { code: ErrorCodes.OPTIONS_INVALID });
  }
  return value;
}
