/**
 * Registrations' writes to Redis, batched (redis-registry.ts): queued for `batchMs`, then issued
 * together: those for one primary in one RECORD_MANY_LUA call, the rest one call each in the same
 * turn of the event loop (so auto pipelining puts them in one write per primary). Bounded by the
 * endpoint's MAX_PENDING_REGISTRY_WRITES and WRITE_BATCH_MAX. Each device is still decided by the
 * same compare-and-set as a single write, so batching changes no outcome.
 */
import type { Logger } from 'pino';

/** Within a batch only when this many devices' writes go to one primary; fewer: one call each. */
const RECORD_MANY_MIN = 2;
/** After a batched call failed other than by a lost connection (an older Redis, a resharding), one call per write this long. */
const RECORD_MANY_PAUSE_MS = 60_000;
/** A batch goes out at once when it is this large (one pipeline per primary stays small). */
const WRITE_BATCH_MAX = 256;

/** One device's part of RECORD_MANY_LUA's ARGV: address, port, seen, timestamp, node, generation. */
export type RecordFields = readonly [string, number, number, number, string, number];

export interface QueuedWrite {
  readonly key: string;
  readonly fields: RecordFields;
  readonly resolve: (r: string) => void;
  readonly reject: (err: Error) => void;
}

export interface WriteBatchOptions {
  /** How long writes gather; 0: each goes out at once on its own. */
  readonly batchMs: number;
  /** One write, one call (RECORD_LUA). */
  readonly recordOne: (key: string, fields: RecordFields) => Promise<string>;
  /** Several writes to one primary, one call (RECORD_MANY_LUA); per write its answer, 'x' for a key the primary does not serve. */
  readonly recordMany: (writes: readonly QueuedWrite[]) => Promise<unknown[]>;
  /** The primary that owns the key's slot as the client knows it; undefined: unknown (or no client: each write alone). */
  readonly primaryOf: (key: string) => string | undefined;
  readonly logger: Logger;
}

export interface WriteBatch {
  /** Queue one write; resolves with RECORD_LUA's answer. */
  queue(key: string, fields: RecordFields): Promise<string>;
  /** Issue what is queued now (at stop: none is left waiting). */
  flush(): void;
}

export function createWriteBatch(o: WriteBatchOptions): WriteBatch {
  let batch: QueuedWrite[] = [];
  let timer: NodeJS.Timeout | null = null;
  let manyPausedUntilMs = 0;

  const issueOne = (w: QueuedWrite): void => {
    try {
      o.recordOne(w.key, w.fields).then(w.resolve, w.reject);
    } catch (err) {
      w.reject(err as Error);
    }
  };
  const issueMany = (ws: QueuedWrite[]): void => {
    o.recordMany(ws).then(
      (rs) => {
        for (let i = 0; i < ws.length; i++) {
          const r = rs[i];
          if (typeof r === 'string' && r !== 'x') ws[i]!.resolve(r);
          else issueOne(ws[i]!);
        }
      },
      (err: Error) => {
        // Each write on its own then, as before batching. A script Redis refused ("ERR ...": an
        // older Redis) is left alone for a while; a lost node, a failover or a redirection is not the script's fault.
        if (/^ERR/.test(err.message)) {
          manyPausedUntilMs = Date.now() + RECORD_MANY_PAUSE_MS;
          o.logger.warn({ err: err.message }, 'batched registry write failed: one call per write for a minute');
        }
        for (const w of ws) issueOne(w);
      },
    );
  };
  const flush = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
    const q = batch;
    batch = [];
    const groups = new Map<string, QueuedWrite[]>();
    const many = q.length >= RECORD_MANY_MIN && Date.now() >= manyPausedUntilMs;
    for (const w of q) {
      const primary = many ? o.primaryOf(w.key) : undefined;
      if (primary === undefined) issueOne(w);
      else {
        const g = groups.get(primary);
        if (g) g.push(w);
        else groups.set(primary, [w]);
      }
    }
    for (const ws of groups.values()) {
      if (ws.length >= RECORD_MANY_MIN) issueMany(ws);
      else for (const w of ws) issueOne(w);
    }
  };
  return {
    queue(key, fields) {
      if (o.batchMs <= 0) return o.recordOne(key, fields);
      return new Promise<string>((resolve, reject) => {
        batch.push({ key, fields, resolve, reject });
        if (batch.length >= WRITE_BATCH_MAX) flush();
        else timer ??= setTimeout(flush, o.batchMs).unref();
      });
    },
    flush,
  };
}
