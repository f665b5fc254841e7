/**
 * What the CPU a pipeline of processes spends per GB allows (issue 15): an estimate to print next
 * to a measured throughput ratio, not a measurement. Each byte of a tunnel passes every process in
 * turn, so on `cores` cores the rate cannot pass cores / (their CPU-s per GB, summed), nor
 * 1 / (the slowest process's CPU-s per GB) (a process runs on one core at a time). The plain TLS
 * baseline is two processes; the relayed tunnel four (bench, client, server, agent).
 */
import type { CpuPerGb } from './server.js';

/** GB per second that CPU-s per GB `cpu` allow on `cores` cores (Infinity: a core per process). */
export function boundGbPerS(cpu: CpuPerGb, cores: number): number {
  const each = Object.values(cpu);
  const total = each.reduce((a, b) => a + b, 0);
  const slowest = Math.max(...each);
  return Math.min(cores / total, 1 / slowest);
}

/** The throughput ratio of `a` to `b` that their CPU-s per GB allow on `cores` cores. */
export function boundRatio(a: CpuPerGb | undefined, b: CpuPerGb | undefined, cores: number): number {
  if (!a || !b || !Object.keys(a).length || !Object.keys(b).length) return NaN;
  return boundGbPerS(a, cores) / boundGbPerS(b, cores);
}
