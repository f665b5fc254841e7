/**
 * The client's pairings (issue 19): one small credential file per device, mode 0600, in the
 * pairing directory (default $XDG_CONFIG_HOME/peerlink/pairings, else ~/.config/peerlink/pairings):
 *   <equipment ID>.json = { format, device, client_id, name, key (base64) }
 * A client with a pairing uses its key instead of the password (the library: accessKey).
 */
import { mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { writeFileAtomic } from '../common/files.js';
import { readSecretFile } from '../common/secret-file.js';
import { EQUIPMENT_ID_PATTERN } from '../protocol/constants.js';
import { KEY_BYTES } from '../protocol/keys.js';
import { checkClientId, checkClientName } from '../protocol/pairing.js';

export const PAIRING_FORMAT = 'peerlink-pairing/1';

export interface Pairing {
  readonly equipmentId: string;
  readonly clientId: string;
  readonly name: string;
  readonly key: Buffer;
}

export function defaultPairingDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'peerlink', 'pairings');
}

export function pairingFile(dir: string, equipmentId: string): string {
  if (!EQUIPMENT_ID_PATTERN.test(equipmentId))
    throw new ConfigError([`equipment ID ${JSON.stringify(equipmentId)}: expected 1-64 characters of A-Z a-z 0-9 . _ -`]);
  return join(dir, `${equipmentId}.json`);
}

export async function savePairing(dir: string, p: Pairing): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = pairingFile(dir, p.equipmentId);
  const body = { format: PAIRING_FORMAT, device: p.equipmentId, client_id: p.clientId, name: p.name, key: p.key.toString('base64') };
  await writeFileAtomic(file, `${JSON.stringify(body, null, 1)}\n`, 0o600);
  return file;
}

/** The stored pairing for a device, or null when there is none; a file others can read is refused (P7). */
export async function loadPairing(dir: string, equipmentId: string): Promise<Pairing | null> {
  const file = pairingFile(dir, equipmentId);
  try {
    await stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ConfigError([`${file}: ${(err as Error).message}`], { cause: err });
  }
  const text = await readSecretFile(file, { what: 'a pairing key', label: file });
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON`], { cause: err, code: ErrorCodes.CONFIG_INVALID });
  }
  const problems: string[] = [];
  if (doc.format !== PAIRING_FORMAT) problems.push(`${file}: format: expected ${PAIRING_FORMAT}`);
  if (doc.device !== equipmentId) problems.push(`${file}: device: expected ${equipmentId}`);
  const key = typeof doc.key === 'string' ? Buffer.from(doc.key, 'base64') : Buffer.alloc(0);
  if (key.length !== KEY_BYTES) problems.push(`${file}: key: expected base64 of ${KEY_BYTES} bytes`);
  let clientId = '';
  let name = '';
  try {
    clientId = checkClientId(doc.client_id, `${file}: client_id`);
    name = checkClientName(doc.name, `${file}: name`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (problems.length) throw new ConfigError(problems, { code: ErrorCodes.CONFIG_INVALID });
  return { equipmentId, clientId, name, key };
}
