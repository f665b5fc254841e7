/**
 * CPU seconds a process has used (user + system, from /proc/PID/stat). On a shared, busy machine
 * a rate per wall-clock second measures the neighbours too; work per CPU-second of the process
 * under test does not (much), so the benchmarks report both.
 */
import { readFileSync } from 'node:fs';

/** Linux's USER_HZ, 100 on every mainstream architecture. */
const CLOCK_TICKS_PER_S = 100;

export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.system;
}

/** User and system (kernel) CPU seconds apart: a UDP server spends much of its time in the kernel. */
export function cpuTimes(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ": state is field 0, utime field 11, stime field 12.
  return { user: Number(fields[11]) / CLOCK_TICKS_PER_S, system: Number(fields[12]) / CLOCK_TICKS_PER_S };
}
