/**
 * Factory provisioning of one device: its identity file and the password for its label.
 * The device gets the registration key (derived from the server's master key) and the
 * access key (derived from the password); it never gets the password or the master key.
 */
import { X509Certificate } from 'node:crypto';
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { writeFileAtomic } from '../common/files.js';
import { type DeviceIdentity, formatIdentity } from '../protocol/identity-file.js';
import { EQUIPMENT_ID_PATTERN } from '../protocol/constants.js';
import { KEY_BYTES, deriveAccessKey, deriveRegistrationKey, normalizePassword } from '../protocol/keys.js';
import { generatePassword } from './password.js';
import { identityName, isGeneration, MAX_IDENTITY_GENERATION } from '../protocol/identity-name.js';
import { checkPasswordStrength } from './password-strength.js';

export const IDENTITY_FILE_MODE = 0o600;

export interface CreateDeviceIdentityOptions {
  readonly equipmentId: string;
  /** The rendezvous server's registration master key (master-key.ts). */
  readonly masterKey: Uint8Array;
  /** PEM of the CA that signs the rendezvous server's certificate. */
  readonly caCertPem: string;
  /** The label password; a fresh one (generatePassword) when omitted. A given one must pass checkPasswordStrength. */
  readonly password?: string;
  /**
   * Which provisioning of this ID (identity-name.ts, 1-255; absent: 0, the first). Provision a
   * device again with the next generation after its identity leaked: its registration key is then
   * the new generation's, and the operator can deny the old one alone (`peerlink-server deny add ID@g`).
   */
  readonly generation?: number;
}

export interface ProvisionedDevice {
  readonly identity: DeviceIdentity;
  /** For the label only: it is not part of `identity` and must not be stored with it. */
  readonly password: string;
}

function invalid(message: string): PeerlinkError {
  return new PeerlinkError(ErrorCodes.OPTIONS_INVALID, `createDeviceIdentity: ${message}`);
}

function checkCaCert(pem: string): string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new PeerlinkError(
      ErrorCodes.OPTIONS_INVALID,
      `createDeviceIdentity: caCertPem is not a readable PEM certificate (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (!cert.ca) throw invalid('caCertPem is not a CA certificate (basicConstraints cA is not set)');
  // Re-encoded: exactly one certificate (X509Certificate reads the first PEM block), LF line ends.
  return cert.toString();
}

export async function createDeviceIdentity(options: CreateDeviceIdentityOptions): Promise<ProvisionedDevice> {
  const { equipmentId, masterKey } = options;
  if (typeof equipmentId !== 'string' || !EQUIPMENT_ID_PATTERN.test(equipmentId)) {
    throw invalid(`equipmentId must be 1-64 characters of A-Z a-z 0-9 . _ -, found ${JSON.stringify(equipmentId)}`);
  }
  if (!(masterKey instanceof Uint8Array) || masterKey.length < KEY_BYTES) {
    throw invalid(`masterKey must be at least ${KEY_BYTES} bytes`);
  }
  const generation = options.generation ?? 0;
  if (!isGeneration(generation))
    throw invalid(`generation must be an integer 0-${MAX_IDENTITY_GENERATION}, found ${JSON.stringify(options.generation)}`);
  const caCert = checkCaCert(options.caCertPem);
  const password = options.password ?? generatePassword();
  if (typeof password !== 'string' || normalizePassword(password) === '') throw invalid('password is empty');
  // A chosen password must resist offline guessing as a generated one does.
  if (options.password !== undefined) checkPasswordStrength(password, `createDeviceIdentity: password of ${equipmentId}`);

  const identity: DeviceIdentity = Object.freeze({
    equipmentId,
    registrationKey: deriveRegistrationKey(masterKey, identityName(equipmentId, generation)),
    accessKey: await deriveAccessKey(password, equipmentId),
    caCert,
    ...(generation ? { generation } : {}),
  });
  return Object.freeze({ identity, password });
}

/** Write the identity file atomically, mode 0600 (the agent refuses anything looser). */
export async function writeDeviceIdentity(path: string, identity: DeviceIdentity): Promise<void> {
  await writeFileAtomic(path, formatIdentity(identity), IDENTITY_FILE_MODE);
}
