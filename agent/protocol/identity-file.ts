/**
 * The device identity file's format: equipment ID, registration key, access key and the CA
 * certificate that signs the rendezvous server, as TOML; and, for an ID provisioned again, its
 * `generation` (1-255; absent: 0, the first; identity-name.ts), whose key the registration key is.
 * Defined once here because two sides use
 * it: provisioning writes it (pki/, scripts/provision/), the agent reads it (device/identity.ts,
 * which also checks the file's mode, P7).
 */
import { X509Certificate } from 'node:crypto';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { KEY_BYTES } from './keys.js';
import { EQUIPMENT_ID_PATTERN } from './constants.js';
import { isGeneration, MAX_IDENTITY_GENERATION } from './identity-name.js';

export const IDENTITY_FORMAT = 1;

export interface DeviceIdentity {
  readonly equipmentId: string;
  readonly registrationKey: Buffer;
  readonly accessKey: Buffer;
  /** PEM of the CA that signs the rendezvous server's certificate. */
  readonly caCert: string;
  /** Which provisioning of this ID (identity-name.ts); absent: 0. */
  readonly generation?: number;
}

const KEYS = ['format', 'equipment_id', 'generation', 'registration_key', 'access_key', 'ca_cert'] as const;

export function formatIdentity(identity: DeviceIdentity): string {
  const body = stringifyToml({
    format: IDENTITY_FORMAT,
    equipment_id: identity.equipmentId,
    ...(identity.generation ? { generation: identity.generation } : {}),
    registration_key: identity.registrationKey.toString('base64'),
    access_key: identity.accessKey.toString('base64'),
    ca_cert: identity.caCert,
  });
  return `# peerlink device identity: written at the factory, mode 0600, never edited in the field.\n${body}\n`;
}

function decodeKey(file: string, key: string, value: unknown, problems: string[]): Buffer {
  if (typeof value !== 'string') {
    problems.push(`${file}: ${key}: expected a base64 string of ${KEY_BYTES} bytes, found ${describe(value)}`);
    return Buffer.alloc(0);
  }
  const buf = Buffer.from(value, 'base64');
  if (buf.length !== KEY_BYTES || buf.toString('base64') !== value) {
    problems.push(`${file}: ${key}: expected base64 of exactly ${KEY_BYTES} bytes, found ${buf.length} bytes`);
  }
  return buf;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the key is missing)';
  if (Array.isArray(value)) return 'an array';
  return `${typeof value} ${JSON.stringify(value)?.slice(0, 40) ?? ''}`.trim();
}

/** Parse identity text; every problem is reported at once, each naming file and key. */
export function parseIdentity(text: string, file: string): DeviceIdentity {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError([`${file}: not valid TOML: ${(err as Error).message.split('\n')[0]}`], {
      cause: err,
      code: ErrorCodes.IDENTITY_INVALID,
    });
  }
  const problems: string[] = [];
  for (const k of Object.keys(doc)) {
    if (!(KEYS as readonly string[]).includes(k)) problems.push(`${file}: ${k}: unknown key (expected one of ${KEYS.join(', ')})`);
  }
  if (doc.format !== IDENTITY_FORMAT) problems.push(`${file}: format: expected ${IDENTITY_FORMAT}, found ${describe(doc.format)}`);
  const id = doc.equipment_id;
  if (typeof id !== 'string' || !EQUIPMENT_ID_PATTERN.test(id)) {
    problems.push(`${file}: equipment_id: expected 1-64 characters of A-Z a-z 0-9 . _ -, found ${describe(id)}`);
  }
  const registrationKey = decodeKey(file, 'registration_key', doc.registration_key, problems);
  const accessKey = decodeKey(file, 'access_key', doc.access_key, problems);
  const caCert = doc.ca_cert;
  if (typeof caCert !== 'string') {
    problems.push(`${file}: ca_cert: expected a PEM certificate, found ${describe(caCert)}`);
  } else {
    try {
      new X509Certificate(caCert);
    } catch (err) {
      problems.push(`${file}: ca_cert: not a readable PEM certificate (${(err as Error).message})`);
    }
  }
  const generation = doc.generation ?? 0;
  if (!isGeneration(generation) || (doc.generation !== undefined && generation === 0)) {
    problems.push(
      `${file}: generation: expected an integer 1-${MAX_IDENTITY_GENERATION} (absent: the first generation), found ${describe(doc.generation)}`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems, { code: ErrorCodes.IDENTITY_INVALID });
  return Object.freeze({
    equipmentId: id as string,
    registrationKey,
    accessKey,
    caCert: caCert as string,
    ...(generation ? { generation: generation as number } : {}),
  });
}
