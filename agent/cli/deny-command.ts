/**
 * `peerlink-server deny add|remove|list [<equipment ID>] [--config FILE]` (issue 19): the
 * operator's deny list. With `[redis]` in the settings it edits the fleet's shared list (every node
 * enforces it within a second or two); otherwise the `[deny] file` the node re-reads.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import {
  DENY_ENTRY_EXPECTED,
  denyKeys,
  editDenyFile,
  editDenyRedis,
  isDenyEntry,
  parseDenyFile,
  withDenyRedis,
} from '../server/deny-list.js';
import type { ServerSettings } from '../server/settings.js';

export const DENY_USAGE = `       peerlink-server deny add|remove <equipment-id | equipment-id@generation> [--config FILE]
       peerlink-server deny list [--config FILE]
                                        the operator's deny list: a denied device's registrations get no answer and
                                        requests for it are refused (exit 26 at the client); in Redis with [redis], else [deny] file`;

export async function denyCommand(
  args: readonly string[],
  settings: ServerSettings,
  out: NodeJS.WritableStream = process.stdout,
): Promise<void> {
  const [op, id, ...extra] = args;
  const bad = (m: string): ConfigError => new ConfigError([`${m}\n${DENY_USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });
  if (op === 'list') {
    if (id !== undefined) throw bad('deny list takes no further arguments');
    const ids = new Set<string>();
    if (settings.redis) {
      const r = settings.redis;
      for (const m of await withDenyRedis(r, (c) => c.smembers(denyKeys(r.keyPrefix).set))) ids.add(m);
    }
    if (settings.deny.file) {
      try {
        for (const m of parseDenyFile(await readFile(settings.deny.file, 'utf8'), settings.deny.file)) ids.add(m);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    out.write(
      [...ids]
        .sort()
        .map((x) => `${x}\n`)
        .join(''),
    );
    return;
  }
  if (op !== 'add' && op !== 'remove') throw bad(`expected deny add|remove|list, found ${JSON.stringify(op)}`);
  if (!id || extra.length || !isDenyEntry(id)) throw bad(`deny ${op}: expected one entry: ${DENY_ENTRY_EXPECTED}`);
  let changed: boolean;
  let where: string;
  if (settings.redis) {
    const r = settings.redis;
    changed = await withDenyRedis(r, (c) => editDenyRedis(c, r.keyPrefix, op, id));
    where = `the shared list in Redis (${denyKeys(r.keyPrefix).set})`;
  } else if (settings.deny.file) {
    changed = await editDenyFile(settings.deny.file, op, id);
    where = settings.deny.file;
  } else {
    throw new ConfigError(['deny: the settings have neither [redis] nor [deny] file: nowhere to keep the list'], {
      code: ErrorCodes.CONFIG_INVALID,
    });
  }
  out.write(
    `${id} ${changed ? (op === 'add' ? 'denied' : 'no longer denied') : op === 'add' ? 'was already denied' : 'was not denied'} (${where})\n`,
  );
}
