/**
 * A process's open file descriptors and its TCP sockets with their states, read from /proc (Linux):
 * the socket inodes in /proc/PID/fd, matched against /proc/PID/net/tcp and tcp6 (which list the
 * whole network namespace). For specs that check a program leaves no connection behind.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';

/** The kernel's TCP states (include/net/tcp_states.h). */
const TCP_STATES: Readonly<Record<number, string>> = {
  1: 'ESTABLISHED',
  2: 'SYN_SENT',
  3: 'SYN_RECV',
  4: 'FIN_WAIT1',
  5: 'FIN_WAIT2',
  6: 'TIME_WAIT',
  7: 'CLOSE',
  8: 'CLOSE_WAIT',
  9: 'LAST_ACK',
  10: 'LISTEN',
  11: 'CLOSING',
};

export interface ProcTcpSocket {
  readonly state: string;
  /** Local port (of the process's end). */
  readonly localPort: number;
  readonly remotePort: number;
}

export interface ProcSockets {
  /** Open file descriptors of the process. */
  readonly fds: number;
  readonly tcp: readonly ProcTcpSocket[];
}

export async function procSockets(pid: number): Promise<ProcSockets> {
  const names = await readdir(`/proc/${pid}/fd`);
  const inodes = new Set<string>();
  for (const n of names) {
    const link = await readlink(`/proc/${pid}/fd/${n}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const tcp: ProcTcpSocket[] = [];
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9]!)) continue;
      tcp.push({
        state: TCP_STATES[parseInt(f[3]!, 16)] ?? f[3]!,
        localPort: parseInt(f[1]!.split(':')[1]!, 16),
        remotePort: parseInt(f[2]!.split(':')[1]!, 16),
      });
    }
  }
  return { fds: names.length, tcp };
}

/** How many of the process's TCP sockets are in each state. */
export function byState(s: ProcSockets): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of s.tcp) out[c.state] = (out[c.state] ?? 0) + 1;
  return out;
}
