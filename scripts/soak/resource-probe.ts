/**
 * Preloaded into a program under soak (NODE_OPTIONS="--import <this file>"), never by the product:
 * once a second it writes what the process holds to PEERLINK_SOAK_PROBE_FILE as one JSON object —
 * heap used and committed (in all and per V8 heap space: new_space, old_space, code_space,
 * large_object_space, ...; committed, used and resident bytes), the active handles and requests by type (process.getActiveResourcesInfo: ref'd timers,
 * sockets, ...) and, counted with async_hooks, the live timers whether ref'd or not (an unref'd
 * timer that is never cleared is a leak too, and getActiveResourcesInfo does not list it). The
 * soak reads the file to show that timers and handles stay flat while requests are served.
 */
import { createHook } from 'node:async_hooks';
import { writeFileSync, renameSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

const file = process.env.PEERLINK_SOAK_PROBE_FILE;
const PROBE_INTERVAL_MS = 1_000;

if (file) {
  const live = new Set<number>();
  createHook({
    init(id, type) {
      if (type === 'Timeout') live.add(id);
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  const write = (): void => {
    const byType: Record<string, number> = {};
    for (const r of process.getActiveResourcesInfo()) byType[r] = (byType[r] ?? 0) + 1;
    const mem = process.memoryUsage();
    // heapTotal: what V8 has committed (young and old generations), the part of RSS that grows while
    // the heap warms up; heapUsed falls back to its floor at each full GC.
    // Per space, so a step of committed heap can be told apart: the young generation's semi-spaces
    // growing (new_space) from the old generation growing (old_space, large_object_space).
    const spaces: Record<string, { size: number; used: number; physical: number }> = {};
    for (const sp of getHeapSpaceStatistics())
      if (sp.space_size > 0) spaces[sp.space_name] = { size: sp.space_size, used: sp.space_used_size, physical: sp.physical_space_size };
    const doc = {
      atMs: Date.now(),
      heapUsedBytes: mem.heapUsed,
      heapTotalBytes: mem.heapTotal,
      externalBytes: mem.external,
      spaces,
      liveTimers: live.size,
      active: byType,
    };
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(doc));
      renameSync(`${file}.tmp`, file);
    } catch {
      // the soak's directory went away: nothing to report to
    }
  };
  // Its own timer is one of the live timers, constant.
  setInterval(write, PROBE_INTERVAL_MS).unref();
}
