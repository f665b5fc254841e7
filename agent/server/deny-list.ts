/**
 * The operator's deny list (issue 19): equipment IDs the server no longer serves, e.g. a device
 * whose identity file leaked from a factory. An entry is an equipment ID (every generation of it)
 * or one identity generation, `ID@g` (identity-name.ts; `ID@0` is the first): after a leak the
 * operator denies the leaked generation and provisions the appliance again with the next one,
 * which is admitted while the leaked file's registrations stay unanswered. A denied device's registrations and probes get no
 * answer (dropped before any cryptography, counted), and a client's request for it gets
 * DEVICE_DENIED (status 16). Every node enforces it within DENY_POLL_MS (+ one Redis round trip).
 *
 * Where it lives: a file (`[deny] file`, one ID a line, # comments), for a single node; and, with
 * `[redis]`, the set `<prefix>{deny}` beside a change counter `<prefix>{deny}:v`. Both keys carry
 * the hash tag {deny}, so on a Redis Cluster they live in one slot and one MULTI changes both.
 * A node enforces the union of both. The file is re-read when it changes; Redis is polled through
 * the node's own registry client (redis-registry.ts, one Redis or a Cluster): a GET of the change
 * counter each poll, SMEMBERS only when it moved. The counter is the change notification: it
 * needs no pub/sub, so it works alike on one Redis and on a Cluster, and a node that was away
 * (Redis outage, restart) catches up at its next poll.
 * A list that fails to read keeps the last good one (logged); bounded at DENY_LIST_MAX entries.
 * `peerlink-server deny add|remove|list` edits either (agent/cli/deny-command.ts).
 */
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Cluster as ClusterClient, Redis as RedisClient } from 'ioredis';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { writeFileAtomic } from '../common/files.js';
import { systemTimers, type TimerHandle, type Timers } from '../common/timers.js';
import { MAX_IDENTITY_GENERATION } from '../protocol/identity-name.js';

export const DENY_POLL_MS = 1_000;
export const DENY_LIST_MAX = 1_000_000;
/** The operator's edits (a short-lived connection of the CLI). */
const REDIS_COMMAND_TIMEOUT_MS = 5_000;

export interface DenyList {
  /** Denied: the whole ID, or (when known) this generation of it. */
  has(equipmentId: string, generation?: number): boolean;
  readonly size: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

type AnyRedis = RedisClient | ClusterClient;

export interface DenyListOptions {
  readonly file?: string | undefined;
  /** The fleet's Redis: the registry's client once it is started (redis-registry.ts), one Redis or a Cluster. */
  readonly redis?: { readonly client: () => AnyRedis; readonly keyPrefix: string } | undefined;
  readonly logger: Logger;
  readonly pollMs?: number;
  /** The poll's interval; default the real clock. */
  readonly timers?: Timers;
}

export const denyKeys = (prefix: string): { set: string; version: string } => ({ set: `${prefix}{deny}`, version: `${prefix}{deny}:v` });

/** A deny entry: an equipment ID, optionally "@" and a generation 0-255. */
export const DENY_ENTRY_PATTERN = /^[A-Za-z0-9._-]{1,64}(?:@(?:0|[1-9]\d{0,2}))?$/;
export const DENY_ENTRY_EXPECTED = `an equipment ID (1-64 of A-Z a-z 0-9 . _ -), optionally @ and a generation 0-${MAX_IDENTITY_GENERATION}`;

export function isDenyEntry(s: string): boolean {
  if (!DENY_ENTRY_PATTERN.test(s)) return false;
  const at = s.indexOf('@');
  return at < 0 || Number(s.slice(at + 1)) <= MAX_IDENTITY_GENERATION;
}

/** Parse the deny file: one entry a line (an equipment ID, or ID@generation); blank lines and # comments ignored. */
export function parseDenyFile(text: string, file: string): Set<string> {
  const out = new Set<string>();
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    if (!isDenyEntry(line)) problems.push(`${file}:${i + 1}: expected ${DENY_ENTRY_EXPECTED}, found ${JSON.stringify(line.slice(0, 70))}`);
    else out.add(line);
  });
  if (out.size > DENY_LIST_MAX) problems.push(`${file}: more than ${DENY_LIST_MAX} entries`);
  if (problems.length) throw new ConfigError(problems, { code: ErrorCodes.CONFIG_INVALID });
  return out;
}

export function createDenyList(o: DenyListOptions): DenyList {
  let fromFile = new Set<string>();
  let fromRedis = new Set<string>();
  let fileStamp = '';
  let redisVersion: string | null = null;
  let timer: TimerHandle | undefined;
  const timers = o.timers ?? systemTimers;
  let polling: Promise<void> = Promise.resolve();
  let failing = false;
  const keys = o.redis ? denyKeys(o.redis.keyPrefix) : null;

  async function readDenyFile(): Promise<void> {
    if (!o.file) return;
    let st;
    try {
      st = await stat(o.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (fileStamp !== 'none' && fromFile.size) o.logger.info({ file: o.file }, 'deny file gone: no device denied by file');
      fileStamp = 'none';
      fromFile = new Set();
      return;
    }
    const s = `${st.ino}:${st.mtimeMs}:${st.size}`;
    if (s === fileStamp) return;
    fromFile = parseDenyFile(await readFile(o.file, 'utf8'), o.file);
    fileStamp = s;
    o.logger.info({ file: o.file, denied: fromFile.size }, 'deny list read');
  }

  async function readRedis(): Promise<void> {
    if (!o.redis || !keys) return;
    const client = o.redis.client();
    const v = await client.get(keys.version);
    if (v === redisVersion) return;
    const members = await client.smembers(keys.set);
    fromRedis = new Set(members.filter(isDenyEntry).slice(0, DENY_LIST_MAX));
    redisVersion = v;
    o.logger.info({ denied: fromRedis.size, version: v }, 'shared deny list read');
  }

  async function poll(): Promise<void> {
    try {
      await readDenyFile();
      await readRedis();
      if (failing) o.logger.info('deny list readable again');
      failing = false;
    } catch (err) {
      if (!failing) o.logger.error({ err: (err as Error).message }, 'deny list unreadable: keeping the last good one');
      failing = true;
    }
  }

  return {
    has(id, generation) {
      if (fromFile.size === 0 && fromRedis.size === 0) return false;
      if (fromFile.has(id) || fromRedis.has(id)) return true;
      if (generation === undefined) return false;
      const one = `${id}@${generation}`;
      return fromFile.has(one) || fromRedis.has(one);
    },
    get size() {
      return fromFile.size + fromRedis.size;
    },
    async start() {
      // A bad file at start-up stops the server (naming the line); later, the last good list stays.
      await readDenyFile();
      await poll();
      timer = timers.setInterval(() => {
        polling = polling.then(poll);
      }, o.pollMs ?? DENY_POLL_MS);
      timer.unref();
    },
    async stop() {
      timers.clearInterval(timer);
      await polling;
    },
  };
}

/** The operator's edits (peerlink-server deny ...). */
export async function editDenyFile(file: string, op: 'add' | 'remove', id: string): Promise<boolean> {
  let list = new Set<string>();
  try {
    list = parseDenyFile(await readFile(file, 'utf8'), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const had = list.has(id);
  if (op === 'add') list.add(id);
  else list.delete(id);
  if (had === (op === 'add')) return false;
  await writeFileAtomic(
    file,
    `# peerlink deny list: equipment IDs the server does not serve (peerlink-server deny)\n${[...list].join('\n')}\n`,
    0o644,
  );
  return true;
}

/** The operator's own short connection (peerlink-server deny ...): one Redis (`url`) or a Cluster (`clusterNodes`, "host:port"). */
export async function withDenyRedis<T>(
  where: { readonly url?: string | undefined; readonly clusterNodes?: readonly string[] | undefined },
  f: (c: AnyRedis) => Promise<T>,
): Promise<T> {
  const { Redis, Cluster } = await import('ioredis');
  const common = { lazyConnect: true, maxRetriesPerRequest: 1, commandTimeout: REDIS_COMMAND_TIMEOUT_MS, enableOfflineQueue: false };
  const c: AnyRedis =
    where.url !== undefined
      ? new Redis(where.url, common)
      : new Cluster(
          (where.clusterNodes ?? []).map((h) => {
            const at = /^(.*):(\d+)$/.exec(h)!;
            return { host: at[1]!.replace(/^\[|\]$/g, ''), port: Number(at[2]) };
          }),
          {
            lazyConnect: true,
            enableOfflineQueue: true,
            redisOptions: { maxRetriesPerRequest: 1, commandTimeout: REDIS_COMMAND_TIMEOUT_MS },
          },
        );
  try {
    await c.connect();
    return await f(c);
  } finally {
    c.disconnect();
  }
}

/** Add or remove one entry and move the change counter, atomically (one slot: {deny}). True if the set changed. */
export async function editDenyRedis(c: AnyRedis, prefix: string, op: 'add' | 'remove', id: string): Promise<boolean> {
  const k = denyKeys(prefix);
  const r = await c.multi()[op === 'add' ? 'sadd' : 'srem'](k.set, id).incr(k.version).exec();
  return Number(r?.[0]?.[1] ?? 0) > 0;
}
