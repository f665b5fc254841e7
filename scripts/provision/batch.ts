/**
 * A factory batch: many devices from a CSV of serials or a serial range, spread over worker
 * threads (one per core by default). Idempotent: a device whose directory exists keeps its
 * identity unless `rotate` is set. Each device is written all-or-nothing (device-writer.ts).
 */
import { appendFile, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, PeerlinkError } from '../../agent/common/errors.js';
import { type DeviceRecord, equipmentIdFor, type IdScheme } from '../../agent/pki/device-id.js';
import { type BatchShared, type DeviceJob, type DeviceResult, ROTATED_MARK, STAGING_MARK, writeDevices } from './device-writer.js';

/** Devices per message to a worker: large enough to amortise messaging, small enough to balance. */
const CHUNK_DEVICES = 100;
export const MANIFEST_FILE = 'manifest.csv';

export interface BatchOptions extends BatchShared {
  readonly records: readonly DeviceRecord[];
  readonly scheme: IdScheme;
  readonly prefix: string;
  /** Worker threads; default one per core. 0 = in this thread (tests). */
  readonly jobs?: number;
  readonly onProgress?: (done: number, total: number) => void;
}

export interface BatchSummary {
  readonly total: number;
  readonly created: number;
  readonly rotated: number;
  readonly kept: number;
  readonly failed: readonly DeviceResult[];
  readonly elapsedMs: number;
  readonly results: readonly DeviceResult[];
}

/** The jobs of a batch: IDs by scheme, duplicates refused before anything is written. */
export function planBatch(records: readonly DeviceRecord[], scheme: IdScheme, prefix: string): DeviceJob[] {
  const seen = new Map<string, string>();
  return records.map((r) => {
    const equipmentId = equipmentIdFor(r, scheme, prefix);
    const dup = seen.get(equipmentId);
    if (dup !== undefined) {
      throw new PeerlinkError(ErrorCodes.OPTIONS_INVALID, `serials ${dup} and ${r.serial} both give equipment id ${equipmentId}`);
    }
    seen.set(equipmentId, r.serial);
    return { equipmentId, serial: r.serial, ...(r.mac ? { mac: r.mac } : {}) };
  });
}

/** Leftovers of an interrupted run: staging directories go, a rotated-away device whose replacement never landed comes back. */
export async function recoverInterrupted(outDir: string): Promise<number> {
  let fixed = 0;
  for (const name of await readdir(outDir)) {
    if (!name.startsWith('.')) continue;
    const staging = name.indexOf(STAGING_MARK);
    const rotated = name.indexOf(ROTATED_MARK);
    if (staging > 0) {
      await rm(join(outDir, name), { recursive: true, force: true });
      fixed++;
    } else if (rotated > 0) {
      const id = name.slice(1, rotated);
      const present = await stat(join(outDir, id)).then(
        () => true,
        () => false,
      );
      if (present) await rm(join(outDir, name), { recursive: true, force: true });
      else await rename(join(outDir, name), join(outDir, id));
      fixed++;
    }
  }
  return fixed;
}

async function runInThread(jobs: readonly DeviceJob[], shared: BatchShared, onResult: (r: DeviceResult) => void): Promise<void> {
  for (let i = 0; i < jobs.length; i += CHUNK_DEVICES) await writeDevices(jobs.slice(i, i + CHUNK_DEVICES), shared, 4, onResult);
}

async function runInWorkers(
  jobs: readonly DeviceJob[],
  shared: BatchShared,
  threads: number,
  onResult: (r: DeviceResult) => void,
): Promise<void> {
  const chunks: DeviceJob[][] = [];
  for (let i = 0; i < jobs.length; i += CHUNK_DEVICES) chunks.push(jobs.slice(i, i + CHUNK_DEVICES));
  let next = 0;
  const workerData: BatchShared = { ...shared, masterKey: Buffer.from(shared.masterKey) };
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = new Worker(new URL('./batch-worker.js', import.meta.url), { workerData });
      const feed = (): void => {
        const chunk = chunks[next++];
        if (chunk === undefined) void w.terminate().then(() => resolve());
        else w.postMessage(chunk);
      };
      w.on('message', (m: DeviceResult | 'chunk-done') => (m === 'chunk-done' ? feed() : onResult(m)));
      w.once('error', reject);
      w.once('online', feed);
    });
  await Promise.all(Array.from({ length: Math.min(threads, chunks.length) }, one));
}

export async function runBatch(o: BatchOptions): Promise<BatchSummary> {
  const t0 = performance.now();
  const jobs = planBatch(o.records, o.scheme, o.prefix);
  await mkdir(o.outDir, { recursive: true, mode: 0o700 });
  await recoverInterrupted(o.outDir);
  const shared: BatchShared = {
    outDir: o.outDir,
    masterKey: o.masterKey,
    caCertPem: o.caCertPem,
    rotate: o.rotate,
    ...(o.server ? { server: o.server } : {}),
    ...(o.productName ? { productName: o.productName } : {}),
  };
  const results: DeviceResult[] = [];
  const onResult = (r: DeviceResult): void => {
    results.push(r);
    o.onProgress?.(results.length, jobs.length);
  };
  const threads = o.jobs ?? availableParallelism();
  if (threads === 0) await runInThread(jobs, shared, onResult);
  else await runInWorkers(jobs, shared, threads, onResult);
  // In the order of the input (workers finish out of order), for the manifest and the report.
  const order = new Map(jobs.map((j, i) => [j.equipmentId, i]));
  results.sort((a, b) => order.get(a.equipmentId)! - order.get(b.equipmentId)!);
  const count = (k: DeviceResult['outcome']): number => results.filter((r) => r.outcome === k).length;
  const stamp = new Date().toISOString();
  const lines = results
    .filter((r) => r.outcome === 'created' || r.outcome === 'rotated')
    .map((r) => `${r.equipmentId},${r.serial},${r.mac ?? ''},${r.outcome},${stamp}\n`);
  const manifest = join(o.outDir, MANIFEST_FILE);
  if (
    !(await stat(manifest).then(
      () => true,
      () => false,
    ))
  )
    await appendFile(manifest, 'equipment_id,serial,mac,event,time\n', { mode: 0o644 });
  if (lines.length > 0) await appendFile(manifest, lines.join(''));
  return {
    total: jobs.length,
    created: count('created'),
    rotated: count('rotated'),
    kept: count('kept'),
    failed: results.filter((r) => r.outcome === 'failed'),
    elapsedMs: performance.now() - t0,
    results,
  };
}

/** A one-line progress bar: "[#####.....] 5000/10000  812/s  ETA 6 s". */
export function progressBar(done: number, total: number, elapsedMs: number, width = 30): string {
  const frac = total === 0 ? 1 : done / total;
  const filled = Math.round(frac * width);
  const rate = elapsedMs > 0 ? (done / elapsedMs) * 1000 : 0;
  const eta = rate > 0 ? Math.ceil((total - done) / rate) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}  ${rate.toFixed(0)}/s  ETA ${eta} s`;
}
