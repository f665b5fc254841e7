/**
 * A floor under user-chosen device passwords (ETSI EN 303 645 5.1-2: no weak universal or
 * user-set values). The access key is scrypt at N=2^10 (~4 ms and 1 MiB a guess on one core,
 * protocol/keys.ts), and the sealed request, the PSK binder and the reverse token each let the
 * server operator, a Redis reader or an on-path observer test guesses offline. The floor keeps that
 * out of reach: 2^64 guesses at 4 ms each are about 2.3e9 core-years (a 4-digit PIN, 13 bits, fell
 * in 12 s). Label passwords (pki/password.ts) carry 98 bits and always pass.
 *
 * The estimate is deliberately crude and generous only where it cannot be fooled cheaply: each
 * character counts log2 of the pool of the classes present (digits, letters — case does not count,
 * normalizePassword upper-cases — others), except one that repeats, or steps by one from, the
 * character before it, which counts 1 bit ("AAAA…", "1234…", "ABCD…").
 */
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { normalizePassword } from '../protocol/keys.js';

export const MIN_PASSWORD_ENTROPY_BITS = 64;
/** Pools overrate short mixed passwords ("Tr0ub4dor&3" scores 67 bits): a length floor as well. */
export const MIN_PASSWORD_CHARS = 12;
/** Longer than any label; a bound so a pasted file cannot make scrypt hash megabytes. */
export const MAX_PASSWORD_CHARS = 256;

const DIGITS_POOL = 10;
const LETTERS_POOL = 26;
const OTHER_ASCII_POOL = 33;
const NON_ASCII_POOL = 100;
const PREDICTABLE_CHAR_BITS = 1;

/** Estimated bits of a password as the access key sees it (after normalizePassword). */
export function estimatePasswordBits(password: string): number {
  const chars = [...normalizePassword(password)];
  let pool = 0;
  if (chars.some((c) => c >= '0' && c <= '9')) pool += DIGITS_POOL;
  if (chars.some((c) => c >= 'A' && c <= 'Z')) pool += LETTERS_POOL;
  if (chars.some((c) => c.charCodeAt(0) < 0x80 && !/[0-9A-Z]/.test(c))) pool += OTHER_ASCII_POOL;
  if (chars.some((c) => c.charCodeAt(0) >= 0x80)) pool += NON_ASCII_POOL;
  if (pool === 0) return 0;
  const perChar = Math.log2(pool);
  let bits = 0;
  for (let i = 0; i < chars.length; i++) {
    const prev = i > 0 ? chars[i - 1]!.codePointAt(0)! : -10;
    const step = Math.abs(chars[i]!.codePointAt(0)! - prev);
    bits += step <= 1 ? PREDICTABLE_CHAR_BITS : perChar;
  }
  return Math.floor(bits);
}

/** Throws PEERLINK_ERR_PASSWORD_WEAK, naming where the password came from, below the floor. */
export function checkPasswordStrength(password: string, where: string): void {
  if ([...password].length > MAX_PASSWORD_CHARS) {
    throw new PeerlinkError(ErrorCodes.PASSWORD_WEAK, `${where}: the password is longer than ${MAX_PASSWORD_CHARS} characters`);
  }
  const bits = estimatePasswordBits(password);
  if (bits < MIN_PASSWORD_ENTROPY_BITS || [...normalizePassword(password)].length < MIN_PASSWORD_CHARS) {
    throw new PeerlinkError(
      ErrorCodes.PASSWORD_WEAK,
      `${where}: the password is too weak (about ${bits} bits; at least ${MIN_PASSWORD_ENTROPY_BITS} bits and ${MIN_PASSWORD_CHARS} characters are required, e.g. 14 random letters and digits, or omit it to get a generated label password of 98 bits)`,
    );
  }
}
