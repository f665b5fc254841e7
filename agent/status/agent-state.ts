/**
 * What `peerlink-agent status` shows: a snapshot of the running daemon, written by it to a state
 * file and read by the CLI. Plain data, no secrets (the file is world-readable under /run).
 */
import type { Endpoint } from '../protocol/address.js';

export const STATE_FORMAT = 1;

export interface AgentState {
  readonly format: typeof STATE_FORMAT;
  readonly pid: number;
  readonly equipmentId: string;
  readonly startedAt: string;
  /** When this snapshot was taken. */
  readonly updatedAt: string;
  readonly configFile: string;
  readonly server: { readonly host: string; readonly udpPort: number; readonly tlsPort: number };
  /** registered | unreachable | starting (from the registration loop). */
  readonly registration: string;
  readonly publicEndpoint: Endpoint | null;
  readonly lastAckAt: string | null;
  /** The agent's router port mapping, when the agent reports one; null otherwise. */
  readonly portMapping: unknown;
  readonly services: readonly string[];
  readonly sessions: Readonly<Record<string, number>>;
  readonly lastConnectionServedAt: string | null;
  readonly reloads: number;
  readonly lastReload: { readonly at: string; readonly ok: boolean; readonly problems: readonly string[]; readonly restartRequired: readonly string[] } | null;
  /** The STATUS= line last given to systemd (also meaningful without systemd). */
  readonly statusText: string;
}

/** The one-line STATUS= systemd shows in `systemctl status`. */
export function statusLine(s: Pick<AgentState, 'registration' | 'server' | 'publicEndpoint' | 'lastReload' | 'portMapping'>): string {
  const server = `${s.server.host}:${s.server.udpPort}`;
  let line: string;
  if (s.registration === 'registered') {
    const pub = s.publicEndpoint ? ` as ${s.publicEndpoint.address}:${s.publicEndpoint.port}` : '';
    line = `registered with ${server}${pub}`;
  } else if (s.registration === 'unreachable') line = `not registered: server ${server} unreachable (no acknowledgement), retrying`;
  else line = `registering with ${server}`;
  const pm = describePortMapping(s.portMapping);
  if (pm) line += `; port mapping ${pm}`;
  if (s.lastReload && !s.lastReload.ok) line += `; last reload refused (${s.lastReload.problems.length} problem(s)), old settings kept`;
  else if (s.lastReload && s.lastReload.restartRequired.length > 0) line += `; restart needed for ${s.lastReload.restartRequired.join(', ')}`;
  return line;
}

/** A short human form of whatever port-mapping status the agent reports (its shape is the agent's). */
export function describePortMapping(pm: unknown): string | null {
  if (pm === null || pm === undefined) return null;
  if (typeof pm === 'string') return pm;
  if (typeof pm === 'object') {
    const o = pm as Record<string, unknown>;
    const parts = ['state', 'protocol', 'method', 'external', 'externalAddress', 'externalPort', 'error']
      .filter((k) => o[k] !== undefined && o[k] !== null)
      .map((k) => (typeof o[k] === 'object' ? `${k}=${JSON.stringify(o[k])}` : `${k}=${String(o[k])}`));
    return parts.length > 0 ? parts.join(' ') : JSON.stringify(pm);
  }
  return String(pm);
}
