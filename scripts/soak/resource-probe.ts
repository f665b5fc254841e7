/**
 * Preloaded into a program under soak (NODE_OPTIONS="--import <this file>"), never by the product:
 * once a second it writes what the process holds to PEERLINK_SOAK_PROBE_FILE as one JSON object —
 * heap used and committed, the active handles and requests by type (process.getActiveResourcesInfo: ref'd timers,
 * sockets, ...) and, counted with async_hooks, the live timers whether ref'd or not (an unref'd
 * timer that is never cleared is a leak too, and getActiveResourcesInfo does not list it). The
 * soak reads the file to show that timers and handles stay flat while requests are served.
 */
import { createHook } from 'node:async_hooks';
import { writeFileSync, renameSync } from 'node:fs';

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
    const doc = { atMs: Date.now(), heapUsedBytes: mem.heapUsed, heapTotalBytes: mem.heapTotal, liveTimers: live.size, active: byType };
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
