/**
 * What `peerlink-agent status` shows: a snapshot of the running daemon, written by it to a state
 * file and read by the CLI. Plain data, no secrets (the file is world-readable under /run).
 */
import type { Endpoint } from '../protocol/address.js';

export const STATE_FORMAT = 1;

export type PortMappingState = {
  /** mapped: the router forwards it; none: no gateway did (or the mapping was lost: searching again); off: not asked. */
  readonly state: 'mapped' | 'none' | 'off';
  readonly reversePort: number | null;
  readonly external: string | null;
  readonly via: 'upnp' | 'natpmp' | null;
} | null;

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
  /** The reverse port and the router's forwarding of it; null when the reverse port is disabled. */
  readonly portMapping: PortMappingState;
  readonly services: readonly string[];
  readonly sessions: Readonly<Record<string, number>>;
  readonly lastConnectionServedAt: string | null;
  readonly reloads: number;
  readonly lastReload: {
    readonly at: string;
    readonly ok: boolean;
    readonly problems: readonly string[];
    readonly restartRequired: readonly string[];
  } | null;
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
  // Only a mapping worth knowing about: one that holds, or one asked for that is missing (lost).
  if (s.portMapping?.state === 'mapped') line += `; port mapping ${s.portMapping.external} via ${s.portMapping.via}`;
  else if (s.portMapping?.state === 'none') line += '; no port mapping';
  if (s.lastReload && !s.lastReload.ok) line += `; last reload refused (${s.lastReload.problems.length} problem(s)), old settings kept`;
  else if (s.lastReload && s.lastReload.restartRequired.length > 0)
    line += `; restart needed for ${s.lastReload.restartRequired.join(', ')}`;
  return line;
}

/** The port mapping in words (null: nothing to say, the reverse port is disabled). */
export function describePortMapping(pm: PortMappingState): string | null {
  if (!pm) return null;
  const port = pm.reversePort === null ? '' : ` (reverse port ${pm.reversePort})`;
  if (pm.state === 'mapped') return `${pm.external} via ${pm.via}${port}`;
  if (pm.state === 'off') return `off${port}`;
  return `none: no gateway forwards the reverse port${port}`;
}
