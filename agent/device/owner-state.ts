/**
 * The owner's state on the device (issue 19): the clients paired with it (name, per-client key,
 * created, last use), the access key of a password the owner set (none: the label's), and the keys
 * taken away (revoked clients, replaced passwords) so that their next request gets a clear code.
 * It lives in its own file under state_dir, never in the factory identity file (read-only).
 *
 * Survives power loss at any instant: every change is written to a temporary file, fsynced,
 * renamed over the old one and the directory fsynced, so the file is always the old state or the
 * new one (test/security/p15-owner-state-atomic.spec.ts kills writers mid-write in a loop). The
 * running agent and the on-device commands (peerlink-agent clients|revoke|reset-password) change
 * it under a lock file (O_EXCL; a lock whose process is gone is taken over), and the agent sees
 * another process's change at its next request and within OWNER_STATE_POLL_MS otherwise.
 */
import {
  closeSync,
  fchownSync,
  fsyncSync,
  openSync,
  readFileSync,
  readdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
  renameSync,
  mkdirSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { KEY_BYTES } from '../protocol/keys.js';
import { checkClientId, checkClientName, MAX_PAIRINGS } from '../protocol/pairing.js';

export const OWNER_STATE_FILE_NAME = 'owner-state.json';
export const OWNER_STATE_FORMAT = 'peerlink-owner-state/1';
const LOCK_FILE_NAME = 'owner-state.lock';
/** Keys remembered as taken away (oldest forgotten first); each costs one HMAC per wake. */
export const MAX_REVOKED_KEYS = 32;
export const OWNER_STATE_POLL_MS = 1_000;
const LOCK_WAIT_MS = 5_000;
const LOCK_RETRY_MS = 10;
/** A lock file with no pid in it, older than this: its writer died between creating and writing it. */
const LOCK_EMPTY_STALE_MS = 1_000;

/** The lock holds no pid and has not been touched for LOCK_EMPTY_STALE_MS (a live writer fills it at once). */
function emptyLockIsStale(lockFile: string): boolean {
  try {
    return Date.now() - statSync(lockFile).mtimeMs > LOCK_EMPTY_STALE_MS;
  } catch {
    return false; // gone: the next open will tell
  }
}

export interface PairedClient {
  readonly id: string;
  readonly name: string;
  readonly key: Buffer;
  readonly createdMs: number;
  readonly lastUsedMs: number;
}

export interface OwnerState {
  /** Access key of the password the owner set; null: the label's (identity file). */
  readonly passwordKey: Buffer | null;
  readonly clients: readonly PairedClient[];
  readonly revokedKeys: readonly Buffer[];
  /** Increases with every write (who changed what is visible as a new number). */
  readonly serial: number;
}

export const EMPTY_OWNER_STATE: OwnerState = Object.freeze({ passwordKey: null, clients: [], revokedKeys: [], serial: 0 });

function key64(v: unknown, field: string, problems: string[]): Buffer {
  const b = typeof v === 'string' ? Buffer.from(v, 'base64') : Buffer.alloc(0);
  if (b.length !== KEY_BYTES || b.toString('base64') !== v) problems.push(`${field}: expected base64 of ${KEY_BYTES} bytes`);
  return b;
}

export function parseOwnerState(text: string, file: string): OwnerState {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON: ${(err as Error).message}`], { code: ErrorCodes.CONFIG_INVALID, cause: err });
  }
  const problems: string[] = [];
  if (doc?.format !== OWNER_STATE_FORMAT) problems.push(`${file}: format: expected ${OWNER_STATE_FORMAT}`);
  const serial = Number.isSafeInteger(doc.serial) ? (doc.serial as number) : (problems.push(`${file}: serial: expected an integer`), 0);
  const passwordKey = doc.password_key === null ? null : key64(doc.password_key, `${file}: password_key`, problems);
  const clients: PairedClient[] = [];
  const list = Array.isArray(doc.clients) ? doc.clients : (problems.push(`${file}: clients: expected an array`), []);
  list.slice(0, MAX_PAIRINGS + 1).forEach((c: Record<string, unknown>, i: number) => {
    const at = `${file}: clients[${i}]`;
    try {
      clients.push({
        id: checkClientId(c?.id, `${at}.id`),
        name: checkClientName(c?.name, `${at}.name`),
        key: key64(c?.key, `${at}.key`, problems),
        createdMs: Number(c?.created_ms) || 0,
        lastUsedMs: Number(c?.last_used_ms) || 0,
      });
    } catch (err) {
      problems.push((err as Error).message);
    }
  });
  if (list.length > MAX_PAIRINGS) problems.push(`${file}: clients: more than ${MAX_PAIRINGS}`);
  const revoked = Array.isArray(doc.revoked_keys) ? doc.revoked_keys : (problems.push(`${file}: revoked_keys: expected an array`), []);
  const revokedKeys = revoked.slice(0, MAX_REVOKED_KEYS).map((k: unknown, i: number) => key64(k, `${file}: revoked_keys[${i}]`, problems));
  if (problems.length) throw new ConfigError(problems, { code: ErrorCodes.CONFIG_INVALID });
  return Object.freeze({ passwordKey, clients: Object.freeze(clients), revokedKeys: Object.freeze(revokedKeys), serial });
}

export function formatOwnerState(s: OwnerState): string {
  return `${JSON.stringify(
    {
      format: OWNER_STATE_FORMAT,
      serial: s.serial,
      password_key: s.passwordKey ? s.passwordKey.toString('base64') : null,
      clients: s.clients.map((c) => ({
        id: c.id,
        name: c.name,
        key: c.key.toString('base64'),
        created_ms: c.createdMs,
        last_used_ms: c.lastUsedMs,
      })),
      revoked_keys: s.revokedKeys.map((k) => k.toString('base64')),
    },
    null,
    1,
  )}\n`;
}

/** Temp file, fsync, rename, fsync the directory: old state or new, whenever the power goes. */
export function writeStateFileAtomic(dir: string, name: string, text: string): void {
  const tmp = join(dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    // A technician's command run as root must leave a file the agent (the directory's owner, e.g.
    // systemd's DynamicUser) can still read.
    if (process.getuid?.() === 0) {
      const d = statSync(dir);
      fchownSync(fd, d.uid, d.gid);
    }
    writeFileSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, join(dir, name));
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface OwnerStore {
  readonly file: string;
  /** The state as on disk now (re-read when another process changed the file). */
  current(): OwnerState;
  /** Read, change, write under the lock; resolves with what was written. */
  update(change: (s: OwnerState) => OwnerState): Promise<OwnerState>;
  /** Call onChange with every new state, whoever wrote it (polls for other processes' writes). */
  watch(onChange: (s: OwnerState) => void): void;
  stop(): void;
}

export interface OwnerStoreOptions {
  readonly stateDir: string;
  readonly logger?: Logger;
  readonly pollMs?: number;
}

export function openOwnerStore(o: OwnerStoreOptions): OwnerStore {
  const file = join(o.stateDir, OWNER_STATE_FILE_NAME);
  const lockFile = join(o.stateDir, LOCK_FILE_NAME);
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  // Temporary files of a write the power cut short: the rename never happened, so they are garbage.
  for (const f of readdirSync(o.stateDir)) {
    if (f.startsWith(`.${OWNER_STATE_FILE_NAME}.`) && f.endsWith('.tmp')) {
      try {
        unlinkSync(join(o.stateDir, f));
      } catch {
        /* another process took it */
      }
    }
  }
  let stamp = '';
  let state: OwnerState = EMPTY_OWNER_STATE;
  let timer: NodeJS.Timeout | undefined;
  let listener: ((s: OwnerState) => void) | null = null;

  /** Throws on a file that does not parse (at start-up that stops the agent, naming the file). */
  function load(): boolean {
    let st;
    try {
      st = statSync(file, { bigint: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const changed = stamp !== 'none';
      stamp = 'none';
      state = EMPTY_OWNER_STATE;
      if (changed) listener?.(state);
      return changed;
    }
    const s = `${st.ino}:${st.mtimeNs}:${st.size}`;
    if (s === stamp) return false;
    state = parseOwnerState(readFileSync(file, 'utf8'), file);
    stamp = s;
    listener?.(state);
    return true;
  }
  load();

  async function withLock<T>(f: () => T): Promise<T> {
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        const fd = openSync(lockFile, 'wx', 0o600);
        writeFileSync(fd, String(process.pid));
        closeSync(fd);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        let holder = NaN;
        try {
          holder = Number(readFileSync(lockFile, 'utf8'));
        } catch {
          continue; // released between our open and read
        }
        // A writer killed while holding the lock: take it over. Killed between creating the lock and
        // writing its pid, it left the lock empty: taken over once older than LOCK_EMPTY_STALE_MS.
        const dead = Number.isInteger(holder) && holder > 0 ? !alive(holder) : emptyLockIsStale(lockFile);
        if (dead) {
          try {
            unlinkSync(lockFile);
          } catch {
            /* someone else did */
          }
          continue;
        }
        if (Date.now() > deadline)
          throw new ConfigError([`${lockFile}: held by process ${holder} for over ${LOCK_WAIT_MS} ms`], {
            code: ErrorCodes.CONFIG_INVALID,
          });
        await sleep(LOCK_RETRY_MS);
      }
    }
    try {
      return f();
    } finally {
      try {
        unlinkSync(lockFile);
      } catch {
        /* gone */
      }
    }
  }

  return {
    file,
    current() {
      try {
        load();
      } catch (err) {
        o.logger?.error({ file, err: (err as Error).message }, 'owner state unreadable; keeping the last good one');
      }
      return state;
    },
    update(change) {
      return withLock(() => {
        load();
        const next = change(state);
        if (next === state) return state;
        const written = Object.freeze({ ...next, serial: state.serial + 1 });
        writeStateFileAtomic(o.stateDir, OWNER_STATE_FILE_NAME, formatOwnerState(written));
        load();
        return state;
      });
    },
    watch(onChange) {
      listener = onChange;
      timer = setInterval(() => {
        try {
          load();
        } catch (err) {
          o.logger?.error({ file, err: (err as Error).message }, 'owner state unreadable; keeping the last good one');
        }
      }, o.pollMs ?? OWNER_STATE_POLL_MS);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/** Remember a key as taken away, newest last, at most MAX_REVOKED_KEYS. */
export function withRevoked(keys: readonly Buffer[], ...more: Buffer[]): Buffer[] {
  return [...keys, ...more].slice(-MAX_REVOKED_KEYS);
}
