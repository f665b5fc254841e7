/**
 * The router port mapping this device holds, kept in its state directory. An agent that is killed
 * (SIGKILL, power cut, OOM) cannot remove its mapping, and a restart listens on a new port (the
 * reverse port defaults to any free one): without this record the gateway would keep the old
 * forwarding for the rest of its one-hour lease, one more at every crash. With it, the next start
 * removes the old mapping (when it is still ours) and asks for the same external port again, so the
 * router holds one mapping per device whatever happened to the previous run.
 * A record that cannot be written (state directory full or read-only) costs only that protection.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/files.js';

export const MAPPING_RECORD_FILE_NAME = 'port-mapping.json';
export const MAPPING_RECORD_FORMAT = 'peerlink-port-mapping/1';

export interface MappingRecord {
  readonly via: 'upnp' | 'natpmp';
  /** The UPnP control host or NAT-PMP gateway address that granted it. */
  readonly gateway: string;
  readonly externalPort: number;
  readonly internalPort: number;
  /** Our LAN address the router forwards to. */
  readonly internalClient: string;
}

const isPort = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 1 && (x as number) <= 65535;

/** The record, or null when there is none; a record that is not one of ours throws, naming the field. */
export async function readMappingRecord(stateDir: string): Promise<MappingRecord | null> {
  const file = join(stateDir, MAPPING_RECORD_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const doc = JSON.parse(text) as Record<string, unknown>;
  const bad = (field: string, expect: string): Error =>
    new Error(`${file}: ${field}: expected ${expect}, found ${JSON.stringify(doc[field])}`);
  if (doc.format !== MAPPING_RECORD_FORMAT) throw bad('format', MAPPING_RECORD_FORMAT);
  if (doc.via !== 'upnp' && doc.via !== 'natpmp') throw bad('via', '"upnp" or "natpmp"');
  if (typeof doc.gateway !== 'string' || doc.gateway.length === 0 || doc.gateway.length > 255) throw bad('gateway', 'a host');
  if (!isPort(doc.externalPort)) throw bad('externalPort', 'a port 1-65535');
  if (!isPort(doc.internalPort)) throw bad('internalPort', 'a port 1-65535');
  if (typeof doc.internalClient !== 'string' || doc.internalClient.length === 0 || doc.internalClient.length > 64)
    throw bad('internalClient', 'an address');
  return Object.freeze({
    via: doc.via,
    gateway: doc.gateway,
    externalPort: doc.externalPort,
    internalPort: doc.internalPort,
    internalClient: doc.internalClient,
  });
}

export async function writeMappingRecord(stateDir: string, r: MappingRecord): Promise<void> {
  await writeFileAtomic(join(stateDir, MAPPING_RECORD_FILE_NAME), `${JSON.stringify({ format: MAPPING_RECORD_FORMAT, ...r })}\n`);
}

export async function clearMappingRecord(stateDir: string): Promise<void> {
  await rm(join(stateDir, MAPPING_RECORD_FILE_NAME), { force: true });
}
