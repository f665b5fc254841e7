/**
 * The replay mark (P12): a request timestamp on disk at or above every request this device ever
 * accepted.
 *
 * The replay cache (common/replay-cache.ts) lives in memory, and the device's idea of the current time
 * comes from the server (HELLO). So after a restart a malicious server could set the time back to
 * that of a request it captured and replay it: the cache is empty and the request looks fresh.
 * With the mark, a request not newer than the mark read at start is a replay. The mark is written
 * atomically and awaited before the device acts on a request, so a crash cannot accept a request
 * without it being covered.
 *
 * Written ahead (issue 15): a request newer than the mark on disk writes the mark as its timestamp
 * plus REPLAY_MARK_LEASE_MS, so the requests that follow within the lease need no write at all (a
 * write is a temp file, fsync and rename: tens of ms on flash, and most of the agent's CPU per
 * request on a fast disk); once half the lease is used the next write starts in the background,
 * so a steady stream of requests never waits for one. P12 holds as before: every accepted
 * timestamp is at or below the mark on disk before the device acts on it.
 *
 * What it costs the owner: after a restart, a request timestamped at or below the mark is refused
 * (REQUEST_REPLAYED): one made within the lease after the last request served before the restart
 * (an agent restarted that soon registers only once its clock has passed the mark, agent.ts, so
 * such a request finds no device rather than a refusal), or from a client whose clock is behind
 * the clock of the last client served, until its clock passes the mark; clients normally keep time
 * within seconds. A state directory that cannot be read or written is logged and the agent keeps working
 * on the in-memory mark (the restart protection is then off).
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
/**
 * How far ahead of an accepted timestamp the mark is written. Requests within it after the last one
 * served are refused after a restart, so it is kept below the time an agent restart takes (process
 * start, identity, registration: over a second on an appliance); under a steady stream of requests
 * it costs one write per half lease (2 per second), off the verdict's path.
 */
export const REPLAY_MARK_LEASE_MS = 1_000;

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.STATE_DIRECTORY?.split(':')[0] || DEFAULT_STATE_DIR;
}

export interface ReplayMarkOptions {
  readonly stateDir: string;
  readonly logger: Logger;
}

export interface ReplayMark {
  /** Requests with a timestamp at or below this were (or may have been) accepted before this run: refused. */
  readonly barrierMs: number;
  /** False when the mark could not be read or written: a restart forgets it. */
  readonly persistent: boolean;
  /**
   * Record an accepted request's timestamp; resolves once a mark at or above it is on disk (or the
   * write failed, logged): at once when the mark written ahead covers it.
   */
  accept(timestampMs: number): Promise<void>;
  /** Resolves once the writes started so far are done (stop(), tests). */
  flush(): Promise<void>;
  /** Writes started since open (each one file written, fsynced and renamed). */
  readonly writes: number;
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
  /** On disk (or read at start): every timestamp at or below it is covered. */
  let persistedMs = barrierMs;
  /** On disk once `writing` settles. */
  let targetMs = barrierMs;
  let writing: Promise<void> = Promise.resolve();
  let writes = 0;
  let warned = false;
  await mkdir(o.stateDir, { recursive: true, mode: 0o700 }).catch(() => undefined);

  /** Queue a write of at least `wantMs`; one write at a time, each with the newest mark, so the file never goes backwards. */
  function writeAhead(wantMs: number): Promise<void> {
    targetMs = Math.max(targetMs, wantMs);
    writing = writing.then(async () => {
      const value = Math.max(wantMs, targetMs);
      if (value <= persistedMs) return; // a write queued after ours ran first with a newer mark
      try {
        writes++;
        await writeFileAtomic(file, `${JSON.stringify({ format: REPLAY_MARK_FORMAT, acceptedUpToMs: value })}\n`, 0o600);
        persistedMs = Math.max(persistedMs, value);
        if (!persistent || warned) o.logger.info({ file }, 'replay mark written again');
        persistent = true;
        warned = false;
      } catch (err) {
        persistent = false;
        // Not covered: the next request tries again (and says so when it can write once more).
        targetMs = persistedMs;
        if (!warned)
          o.logger.warn(
            { file, err: (err as Error).message },
            'cannot write the replay mark: serving on, but a restart will forget which requests were used',
          );
        warned = true;
      }
    });
    return writing;
  }

  return {
    barrierMs,
    file,
    get persistent() {
      return persistent;
    },
    get writes() {
      return writes;
    },
    accept(timestampMs) {
      if (timestampMs <= persistedMs) {
        // Covered already. Past half the lease, renew it in the background (nobody waits).
        if (targetMs === persistedMs && timestampMs > persistedMs - REPLAY_MARK_LEASE_MS / 2)
          void writeAhead(timestampMs + REPLAY_MARK_LEASE_MS);
        return Promise.resolve();
      }
      if (timestampMs <= targetMs) return writing;
      return writeAhead(timestampMs + REPLAY_MARK_LEASE_MS);
    },
    flush: () => writing,
  };
}
