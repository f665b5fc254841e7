/**
 * The replay mark (P12): the newest request timestamp this device ever accepted, kept on disk.
 *
 * The replay cache (common/replay-cache.ts) lives in memory, and the device's idea of the current time
 * comes from the server (HELLO). So after a restart a malicious server could set the time back to
 * that of a request it captured and replay it: the cache is empty and the request looks fresh.
 * With the mark, a request not newer than one accepted before the restart is a replay. The mark
 * is written atomically and awaited before the device acts on a request, so a crash cannot
 * accept a request without recording it.
 *
 * What it costs the owner: after a restart, a client whose clock is behind the clock of the last
 * client served is refused (REQUEST_REPLAYED) until its clock passes that timestamp; clients
 * normally keep time within seconds. A state directory that cannot be read or written is logged
 * and the agent keeps working on the in-memory mark (the restart protection is then off).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../common/files.js';
import { rejectUnknownKeys } from '../common/options.js';

export const REPLAY_MARK_FILE_NAME = 'replay-mark.json';
export const REPLAY_MARK_FORMAT = 'peerlink-replay-mark/1';
/** Persistent state of the agent (systemd's StateDirectory= sets STATE_DIRECTORY). */
export const DEFAULT_STATE_DIR = '/var/lib/peerlink';

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.STATE_DIRECTORY?.split(':')[0] || DEFAULT_STATE_DIR;
}

export interface ReplayMarkOptions {
  readonly stateDir: string;
  readonly logger: Logger;
}

export interface ReplayMark {
  /** Requests with a timestamp at or below this were (or may have been) accepted before this run. */
  readonly barrierMs: number;
  /** False when the mark could not be read or written: a restart forgets it. */
  readonly persistent: boolean;
  /** Record an accepted request's timestamp; resolves once it is on disk (or failed, logged). */
  accept(timestampMs: number): Promise<void>;
  readonly file: string;
}

export async function openReplayMark(input: ReplayMarkOptions): Promise<ReplayMark> {
  rejectUnknownKeys('replay mark options', input, ['stateDir', 'logger']);
  const o = Object.freeze({ ...input });
  const file = join(o.stateDir, REPLAY_MARK_FILE_NAME);
  let barrierMs = 0;
  let persistent = true;
  try {
    const doc = JSON.parse(await readFile(file, 'utf8')) as { format?: unknown; acceptedUpToMs?: unknown };
    if (doc.format !== REPLAY_MARK_FORMAT || typeof doc.acceptedUpToMs !== 'number' || !Number.isSafeInteger(doc.acceptedUpToMs)) {
      throw new Error(`format: expected ${REPLAY_MARK_FORMAT} with an integer acceptedUpToMs`);
    }
    barrierMs = doc.acceptedUpToMs;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') {
      persistent = false;
      o.logger.error(
        { file, err: (err as Error).message },
        'replay mark unreadable: requests seen before this restart are not known (P12 off until it is written again)',
      );
    }
  }
  let markMs = barrierMs;
  let writing: Promise<void> = Promise.resolve();
  let warned = false;
  await mkdir(o.stateDir, { recursive: true, mode: 0o700 }).catch(() => undefined);

  return {
    barrierMs,
    file,
    get persistent() {
      return persistent;
    },
    accept(timestampMs) {
      if (timestampMs <= markMs) return writing;
      markMs = timestampMs;
      // One write at a time, each with the newest mark, so the file never goes backwards.
      writing = writing.then(async () => {
        try {
          await writeFileAtomic(file, `${JSON.stringify({ format: REPLAY_MARK_FORMAT, acceptedUpToMs: markMs })}\n`, 0o600);
          if (!persistent || warned) o.logger.info({ file }, 'replay mark written again');
          persistent = true;
          warned = false;
        } catch (err) {
          persistent = false;
          if (!warned)
            o.logger.warn(
              { file, err: (err as Error).message },
              'cannot write the replay mark: serving on, but a restart will forget which requests were used',
            );
          warned = true;
        }
      });
      return writing;
    },
  };
}
