/**
 * npm run bench -- provision [--devices N] [--jobs N]: a factory batch of N devices (default
 * 10,000; identity + label each) through the real `peerlink-provision batch` code, timed, in a
 * throwaway directory. Baseline measured in the same run: what the key derivation alone would
 * cost at the previous scrypt cost (N=2^14), one core, extrapolated from a sample. Reported as
 * ratios, and against the target of 10,000 devices in 60 s.
 */
import { scrypt } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa } from '../../agent/pki/ca.js';
import { createRegistrationMasterKey } from '../../agent/pki/master-key.js';
import { ACCESS_KEY_SCRYPT } from '../../agent/protocol/keys.js';
import { runBatch } from '../provision/batch.js';
import { serialRange } from '../../agent/pki/device-id.js';

const TARGET_DEVICES = 10_000;
const TARGET_MS = 60_000;
const BASELINE_SAMPLE = 40;
const OLD_SCRYPT = { N: 1 << 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

async function scryptMsPerKey(params: typeof OLD_SCRYPT, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve, reject) =>
      scrypt('ABCDEFGHJKMNPQRSTVWX', `peerlink/v1/access-key\0TV-${i}`, 32, params, (err) => (err ? reject(err) : resolve())),
    );
  }
  return (performance.now() - t0) / n;
}

export async function provisionBench(o: { devices?: number; jobs?: number; out?: string }): Promise<void> {
  const devices = o.devices ?? TARGET_DEVICES;
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-provision-'));
  try {
    const ca = createCa({ commonName: 'bench CA' });
    const masterKey = createRegistrationMasterKey();
    const load0 = loadavg()[0]!;
    const cpu0 = process.cpuUsage();
    let lastPct = -1;
    const summary = await runBatch({
      outDir: join(dir, 'devices'),
      masterKey,
      caCertPem: ca.certPem,
      rotate: false,
      records: serialRange(`1-${devices}`, 6).map((serial) => ({ serial })),
      scheme: 'serial',
      prefix: 'TV-',
      server: 'rendezvous.example.com:7443',
      ...(o.jobs !== undefined ? { jobs: o.jobs } : {}),
      onProgress(done, total) {
        const pct = Math.floor((done / total) * 10);
        if (pct !== lastPct) {
          lastPct = pct;
          process.stderr.write(`  ${done}/${total}\n`);
        }
      },
    });
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    if (summary.failed.length > 0) throw new Error(`${summary.failed.length} devices failed, e.g. ${summary.failed[0]!.error}`);
    const newMs = await scryptMsPerKey(ACCESS_KEY_SCRYPT, BASELINE_SAMPLE * 4);
    const oldMs = await scryptMsPerKey(OLD_SCRYPT, BASELINE_SAMPLE);
    const perDeviceMs = summary.elapsedMs / devices;
    const scaled10k = perDeviceMs * TARGET_DEVICES;
    const oldKdf10k = oldMs * TARGET_DEVICES;
    const r = {
      date: new Date().toISOString(),
      devices,
      threads: o.jobs ?? availableParallelism(),
      loadAvgAtStart: load0,
      loadAvgAtEnd: loadavg()[0]!,
      elapsedMs: Math.round(summary.elapsedMs),
      devicesPerSecond: Math.round((devices / summary.elapsedMs) * 1000),
      projected10kMs: Math.round(scaled10k),
      cpuMs: Math.round(cpuMs),
      cpuMsPerDevice: +(cpuMs / devices).toFixed(2),
      scryptMsNow: +newMs.toFixed(2),
      scryptMsOld: +oldMs.toFixed(2),
      oldKdfOnly10kOneCoreMs: Math.round(oldKdf10k),
    };
    process.stdout.write(
      `factory batch: ${devices} devices (identity + SVG label with QR), ${r.threads} worker threads, load average ${load0.toFixed(1)} -> ${r.loadAvgAtEnd.toFixed(1)}\n\n`,
    );
    process.stdout.write('| measure | value | ratio |\n|---|---|---|\n');
    process.stdout.write(
      `| ${devices} devices, wall time | ${(summary.elapsedMs / 1000).toFixed(1)} s (${r.devicesPerSecond}/s) | ${(scaled10k / TARGET_MS).toFixed(2)} of the 60 s target (for 10,000) |\n`,
    );
    process.stdout.write(
      `| CPU time of the batch (all threads; independent of other load) | ${(cpuMs / 1000).toFixed(1)} s (${(cpuMs / devices).toFixed(2)} ms/device) | ${(((cpuMs / devices) * TARGET_DEVICES) / availableParallelism() / TARGET_MS).toFixed(2)} of the target if the ${availableParallelism()} cores were ours |\n`,
    );
    process.stdout.write(
      `| baseline: scrypt N=2^14 alone, 10,000 keys, one core | ${(oldKdf10k / 1000).toFixed(0)} s (${oldMs.toFixed(1)} ms/key) | ${(oldKdf10k / scaled10k).toFixed(1)}x the whole batch now |\n`,
    );
    process.stdout.write(`| scrypt N=2^10 per key | ${newMs.toFixed(1)} ms | ${(oldMs / newMs).toFixed(1)}x cheaper |\n`);
    await writeFile(o.out ?? 'bench-provision.json', `${JSON.stringify(r, null, 2)}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
