/**
 * What /proc says about a running program: resident memory, open file descriptors, and the local
 * ports of its UDP sockets (found by matching its socket inodes against /proc/net/udp, so the
 * fuzzer needs no help from the program to find the agent's registration socket).
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

export interface ProcessSample {
  readonly rssKiB: number;
  readonly fds: number;
}

export function sampleProcess(pid: number): ProcessSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!rss) throw new Error(`/proc/${pid}/status: no VmRSS line`);
  return Object.freeze({ rssKiB: Number(rss[1]), fds: readdirSync(`/proc/${pid}/fd`).length });
}

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed between the listing and the readlink
    }
  }
  return inodes;
}

/** Local ports of the process's IPv4 UDP sockets. */
export function udpPortsOf(pid: number): number[] {
  const inodes = socketInodes(pid);
  const ports: number[] = [];
  // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ..."
  for (const line of readFileSync(`/proc/${pid}/net/udp`, 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
  }
  return ports;
}

/**
 * TCP sockets of the process by state name (CLOSE_WAIT is how a leaked half-closed socket shows),
 * and UNLISTED: socket descriptors in no TCP or UDP table, i.e. connections the kernel has already
 * closed (reset, or fully closed) whose descriptor the program still holds (or unix sockets).
 */
export function tcpStatesOf(pid: number): Record<string, number> {
  const names: Record<string, string> = {
    '01': 'ESTABLISHED',
    '02': 'SYN_SENT',
    '03': 'SYN_RECV',
    '04': 'FIN_WAIT1',
    '05': 'FIN_WAIT2',
    '06': 'TIME_WAIT',
    '07': 'CLOSE',
    '08': 'CLOSE_WAIT',
    '09': 'LAST_ACK',
    '0A': 'LISTEN',
    '0B': 'CLOSING',
  };
  const inodes = socketInodes(pid);
  const out: Record<string, number> = {};
  const listed = new Set<string>();
  for (const table of ['tcp', 'tcp6', 'udp', 'udp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && inodes.has(f[9]!)) {
        listed.add(f[9]!);
        if (table.startsWith('udp')) continue;
        const state = names[f[3]!] ?? f[3]!;
        out[state] = (out[state] ?? 0) + 1;
      }
    }
  }
  const unlisted = [...inodes].filter((i) => !listed.has(i)).length;
  if (unlisted > 0) out.UNLISTED = unlisted;
  return out;
}
