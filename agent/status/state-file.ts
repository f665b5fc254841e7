/**
 * The daemon's state file: the running agent writes a snapshot (atomically: temp file and
 * rename, so a reader never sees half of one) under its runtime directory, and
 * `peerlink-agent status` reads it. Chosen over a local socket because it needs no listener
 * in the daemon, works under ProtectSystem=strict with RuntimeDirectory=, survives a hung
 * daemon (the reader still sees the last snapshot and its age), and costs one small write
 * only when something changed.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/files.js';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { STATE_FORMAT, type AgentState } from './agent-state.js';

export const DEFAULT_RUNTIME_DIR = '/run/peerlink';
export const STATE_FILE_NAME = 'agent-state.json';

/** systemd sets RUNTIME_DIRECTORY for RuntimeDirectory=; elsewhere /run/peerlink. */
export function defaultStateFile(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.RUNTIME_DIRECTORY?.split(':')[0] || DEFAULT_RUNTIME_DIR;
  return join(dir, STATE_FILE_NAME);
}

export async function writeStateFile(file: string, state: AgentState): Promise<void> {
  // World-readable on purpose: a technician's `status` need not be root. No secrets inside.
  await writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`, 0o644);
}

export async function readStateFile(file: string): Promise<AgentState> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([`${file}: cannot read the agent's state file (${code ?? (err as Error).message}); is peerlink-agent running?`], {
      code: ErrorCodes.CONFIG_INVALID,
      cause: err,
    });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON: ${(err as Error).message}`], { cause: err });
  }
  const format = (doc as { format?: unknown } | null)?.format;
  if (format !== STATE_FORMAT) {
    throw new ConfigError([`${file}: format: expected ${STATE_FORMAT}, found ${JSON.stringify(format)}`]);
  }
  return doc as AgentState;
}
