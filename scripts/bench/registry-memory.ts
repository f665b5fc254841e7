#!/usr/bin/env node
/**
 * Memory per registered device (run with --expose-gc, one process per size): the process after
 * creating the empty in-memory registry is the baseline; then N devices are registered through
 * `record` (IDs built as fresh strings, as parsed from packets; IPv4 mappings), garbage is
 * collected, and the growth is divided by N. Prints JSON. argv: N [map-of-objects]
 */
import { createMemoryRegistry } from '../../agent/server/registry.js';

const gc = (globalThis as { gc?: () => void }).gc;

function settle(): NodeJS.MemoryUsage {
  for (let i = 0; i < 4; i++) gc!();
  return process.memoryUsage();
}

function main(): void {
  if (!gc) throw new Error('run with --expose-gc');
  const n = Number(process.argv[2]);
  const kind = process.argv[3] ?? 'compact';
  const reg = createMemoryRegistry();
  const map = new Map<string, { address: string; port: number; lastSeenMs: number; lastTimestampMs: number }>();
  const before = settle();
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    // 16-character IDs like a factory serial; the address is a fresh string per packet too.
    const id = `TV-${(0x1000000000000 + i * 7919).toString(16).toUpperCase().slice(-13)}`;
    const address = `${100 + (i & 63)}.${(i >> 6) & 255}.${(i >> 14) & 255}.${i & 255}`;
    const e = { address, port: 1024 + (i % 60000), lastSeenMs: now + i, lastTimestampMs: now + i };
    if (kind === 'compact') reg.record(id, e);
    else map.set(id, e);
  }
  const after = settle();
  const size = kind === 'compact' ? reg.size : map.size;
  if (size !== n) throw new Error(`expected ${n} entries, have ${size}`);
  // `external` includes the typed arrays (`arrayBuffers`).
  const heap = (m: NodeJS.MemoryUsage): number => m.heapUsed + m.external;
  process.stdout.write(
    `${JSON.stringify({
      kind,
      devices: n,
      rssBytesPerDevice: (after.rss - before.rss) / n,
      heapBytesPerDevice: (heap(after) - heap(before)) / n,
      baselineRssBytes: before.rss,
    })}\n`,
  );
}

main();
