/**
 * The node flags production runs the server with, read from its systemd unit
 * (systemd/peerlink-server.service): the soak and the server bench start their servers with them,
 * so what they measure is what a deployed node does (the young generation fixed at 16 MiB
 * semi-spaces: V8 would otherwise resize it with the load).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIST } from './program.js';

/** The server's systemd unit, in the checkout. */
export const SERVER_UNIT = join(DIST, '..', 'systemd', 'peerlink-server.service');

/** The flags given to node itself in a unit's ExecStart (`/usr/bin/node <flags> <script> ...`). */
export function nodeFlagsOfUnit(unitText: string): string[] {
  const line = unitText.split('\n').find((l) => l.startsWith('ExecStart='));
  if (line === undefined) throw new Error('no ExecStart= in the unit');
  const words = line.slice('ExecStart='.length).trim().split(/\s+/);
  if (!/(^|\/)node$/.test(words[0] ?? '')) throw new Error(`ExecStart= does not run node: ${line}`);
  const flags: string[] = [];
  for (const w of words.slice(1)) {
    if (!w.startsWith('-')) break;
    flags.push(w);
  }
  return flags;
}

/** A reader of a unit's node flags: the file is read once, on first use. */
export function unitNodeFlags(unitFile: string): () => readonly string[] {
  let cached: readonly string[] | null = null;
  return () => (cached ??= Object.freeze(nodeFlagsOfUnit(readFileSync(unitFile, 'utf8'))));
}

/** The server unit's node flags (read once). */
export const serverNodeFlags = unitNodeFlags(SERVER_UNIT);
