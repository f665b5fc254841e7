/**
 * The device's factory identity, loaded: written once at the factory (mode 0600), never edited in
 * the field. The agent refuses a file that group or others can read (P7); the format itself is
 * protocol/identity-file.ts.
 */
import { ErrorCodes } from '../common/errors.js';
import { readSecretFile } from '../common/secret-file.js';
import { parseIdentity, type DeviceIdentity } from '../protocol/identity-file.js';

/** Read and check an identity file; refuses one that group or others may read (P7), checked on the descriptor read. */
export async function loadIdentity(file: string): Promise<DeviceIdentity> {
  const text = await readSecretFile(file, {
    what: 'the device secret',
    permissionsCode: ErrorCodes.IDENTITY_PERMISSIONS,
    readErrorCode: ErrorCodes.IDENTITY_INVALID,
  });
  return parseIdentity(text, file);
}
