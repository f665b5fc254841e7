/**
 * The registration master key: held by the rendezvous server only. The server derives each
 * device's registration key from it (protocol/keys.ts deriveRegistrationKey), so it needs no
 * per-device database; it never holds access keys or passwords. Anyone with this key can
 * impersonate any device to the server, so its file is mode 0600 and refused otherwise.
 */
import { randomBytes } from 'node:crypto';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { readSecretFile } from '../common/secret-file.js';
import { KEY_BYTES } from '../protocol/keys.js';

export const MASTER_KEY_BYTES = KEY_BYTES;

export function createRegistrationMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_BYTES);
}

/** The file format: one line of base64. */
export function formatMasterKey(key: Uint8Array): string {
  if (key.length !== MASTER_KEY_BYTES) throw new RangeError(`registration master key must be ${MASTER_KEY_BYTES} bytes`);
  return `${Buffer.from(key).toString('base64')}\n`;
}

/** Parse the file text; the error names the file but never echoes its content (it may be a key). */
export function parseMasterKey(text: string, file: string): Buffer {
  const b64 = text.trim();
  const key = Buffer.from(b64, 'base64');
  // Round-trip check: Buffer.from silently skips characters that are not base64.
  if (key.length !== MASTER_KEY_BYTES || key.toString('base64') !== b64) {
    throw new ConfigError([
      `${file}: expected one line of base64 encoding exactly ${MASTER_KEY_BYTES} bytes (create one with: peerlink-provision master-key --out ${file})`,
    ]);
  }
  return key;
}

/** Read and check a master key file; refuses one that group or others may read (checked on the descriptor read). */
export async function loadMasterKey(file: string): Promise<Buffer> {
  const text = await readSecretFile(file, { what: 'the registration master key', permissionsCode: ErrorCodes.CONFIG_INVALID });
  return parseMasterKey(text, file);
}
