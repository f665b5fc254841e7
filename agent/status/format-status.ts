/** `peerlink-agent status` for a technician: the state file in words. */
import { describePortMapping, type AgentState } from './agent-state.js';

export interface StatusView {
  readonly state: AgentState;
  /** Whether the daemon's PID is alive (a state file may outlive a crashed daemon). */
  readonly running: boolean;
  readonly nowMs: number;
}

export function ago(iso: string | null, nowMs: number): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  const human =
    s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return `${iso} (${human} ago)`;
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${d > 0 ? `${d}d ` : ''}${h}h ${m}m ${s % 60}s`;
}

export function formatStatus(v: StatusView): string {
  const s = v.state;
  const rows: Array<[string, string]> = [
    ['agent', v.running ? `running (pid ${s.pid})` : `NOT running (pid ${s.pid} is gone; last snapshot below)`],
    ['equipment', s.equipmentId],
    ['status', s.statusText],
    ['registered', s.registration === 'registered' ? 'yes' : `no (${s.registration})`],
    ['server', `${s.server.host} udp ${s.server.udpPort} / tls ${s.server.tlsPort}`],
    [
      'public address',
      s.publicEndpoint
        ? `${s.publicEndpoint.address}:${s.publicEndpoint.port} (as the server sees us)`
        : 'unknown (no acknowledgement yet)',
    ],
    ['last ack', ago(s.lastAckAt, v.nowMs)],
    ['port mapping', describePortMapping(s.portMapping) ?? 'none (the reverse port is disabled)'],
    ['uptime', v.running ? duration(v.nowMs - Date.parse(s.startedAt)) : '-'],
    ['services', s.services.join(', ')],
    [
      'sessions',
      Object.entries(s.sessions)
        .map(([k, n]) => `${k}=${n}`)
        .join(' '),
    ],
    ['last connection served', ago(s.lastConnectionServedAt, v.nowMs)],
    [
      'settings',
      `${s.configFile}; reloads ${s.reloads}${s.lastReload ? `, last ${s.lastReload.ok ? 'applied' : 'REFUSED'} ${ago(s.lastReload.at, v.nowMs)}` : ''}`,
    ],
    ['snapshot', ago(s.updatedAt, v.nowMs)],
  ];
  if (s.lastReload && !s.lastReload.ok) for (const p of s.lastReload.problems) rows.push(['  problem', p]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join('\n')}\n`;
}
