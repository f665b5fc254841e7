/**
 * Device access passwords: printed on the appliance's label at the factory and typed by its
 * owner into a client. Only the scrypt-derived access key is stored on the device
 * (protocol/keys.ts deriveAccessKey); the password itself exists on the label alone.
 */
import { randomInt } from 'node:crypto';

/**
 * Digits and upper-case letters without the look-alikes 0/O, 1/I/L and U (V/U confusion,
 * and fewer accidental words). Lower case typed by a person still works: normalizePassword
 * upper-cases and drops the grouping dashes and spaces before deriving the key.
 */
export const PASSWORD_ALPHABET = '23456789ABCDEFGHJKMNPQRSTVWXYZ';
export const PASSWORD_LENGTH_CHARS = 20;
export const PASSWORD_GROUP_CHARS = 4;
/** 20 * log2(30) = 98.1 bits: far beyond offline guessing even against the cheap end of scrypt. */
export const PASSWORD_ENTROPY_BITS = Math.floor(PASSWORD_LENGTH_CHARS * Math.log2(PASSWORD_ALPHABET.length));

/** A fresh password such as "7KQ2-MZ9T-XH4C-RW8P-3NVB" (randomInt is unbiased: it rejects, never takes a modulo). */
export function generatePassword(): string {
  let chars = '';
  for (let i = 0; i < PASSWORD_LENGTH_CHARS; i++) chars += PASSWORD_ALPHABET[randomInt(PASSWORD_ALPHABET.length)];
  const groups: string[] = [];
  for (let i = 0; i < chars.length; i += PASSWORD_GROUP_CHARS) groups.push(chars.slice(i, i + PASSWORD_GROUP_CHARS));
  return groups.join('-');
}
