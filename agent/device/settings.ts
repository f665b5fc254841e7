/**
 * The agent's settings file (TOML), edited by field technicians. See config/agent.example.toml.
 * Identity keys (equipment ID, keys, CA) belong in the identity file and are rejected here.
 */
import { dirname, resolve } from 'node:path';
import { LOG_LEVELS, readTomlFile, SettingsChecker, type LogLevel } from '../common/settings-checker.js';
import { isSessionService } from '../protocol/session-streams.js';
import {
  REGISTER_INTERVAL_MS,
  RELAY_AFTER_MS,
  SERVICE_NAME_PATTERN,
  PEER_CONNECT_TIMEOUT_MS,
  REVERSE_MAX_PENDING_CONNECTIONS,
  REVERSE_TOKEN_TIMEOUT_MS,
} from '../protocol/constants.js';
import { parseHostPort, type HostPort } from '../common/endpoint-parse.js';
import { MAPPING_MODES, type MappingMode } from '../nat/port-mapping.js';
import { defaultStateDir } from './replay-mark.js';
import { DEVICE_KEEP_IDLE_MS } from './kept-connection.js';

/** RFC 8085: keepalives more often than every 15 s are abusive. */
export const MIN_REGISTER_INTERVAL_MS = 15_000;
/** A direct dial that has not connected by then is given up for the relay (the user must not wait long). */
export const DIRECT_DIAL_TIMEOUT_MS = 3_000;
/** Renew the router's forwarding of the reverse port this often (well inside its one-hour lease). */
export const MAPPING_RENEW_MS = 600_000;

export interface AgentSettings {
  readonly identityFile: string;
  /** Persistent state (the replay mark, P12); STATE_DIRECTORY under systemd, else /var/lib/peerlink. */
  readonly stateDir: string;
  readonly logLevel: LogLevel;
  readonly server: {
    readonly host: string;
    readonly udpPort: number;
    readonly tlsPort: number;
    readonly serverName: string;
    /** The server's probe port (diagnose's NAT mapping test); 0 = the server offers none. */
    readonly probePort: number;
    /** Keep the attach connection this long after a request (kept-connection.ts); 0 = close it at once. */
    readonly keepIdleMs: number;
  };
  readonly registration: { readonly intervalMs: number; readonly localPort: number };
  /**
   * "fixed": register every registration.interval_ms. "adaptive": learn the longest interval the
   * NAT keeps the mapping for, within [minIntervalMs, maxIntervalMs] (device/keepalive-policy.ts).
   */
  readonly keepalive: { readonly mode: 'fixed' | 'adaptive'; readonly minIntervalMs: number; readonly maxIntervalMs: number };
  readonly dial: {
    readonly allowLoopback: boolean;
    readonly allowLinkLocal: boolean;
    /** Private, CGN and ULA clients even when the server is on a public address (address-policy.ts). */
    readonly allowPrivate: boolean;
    readonly connectTimeoutMs: number;
    /** How long the direct dial may take before the relay is used. */
    readonly directTimeoutMs: number;
    /** When the relay is tried while direct attempts go on (sooner if they all fail). */
    readonly relayAfterMs: number;
    /** Try TCP simultaneous open towards the client's observed endpoint. */
    readonly holePunch: boolean;
    readonly maxConcurrent: number;
    /** Serve sessions with streams (docs/sessions.md); false: refuse them, clients fall back to a tunnel each. */
    readonly sessions: boolean;
  };
  /** The device's own listening port, which clients may dial (reverse strategy). */
  readonly reverse: {
    readonly enabled: boolean;
    /** 0 = any free port. */
    readonly listenPort: number;
    /** Ask the router to forward it (UPnP IGD v1/v2, NAT-PMP). */
    readonly portMapping: MappingMode;
    /** Ask again this often: a gateway that restarted gets the mapping back. */
    readonly mappingRenewMs: number;
    /** P10: a connection must name its request within this time of its accept. */
    readonly tokenTimeoutMs: number;
    /** P10: connections before their token at once; more are dropped at once. */
    readonly maxPending: number;
  };
  /** The allow-list: service name -> local host:port. */
  readonly services: ReadonlyMap<string, HostPort>;
}

const IDENTITY_KEYS = new Set(['equipment_id', 'registration_key', 'access_key', 'ca_cert', 'secret', 'password']);
const TOP = ['identity_file', 'state_dir', 'log_level', 'server', 'registration', 'keepalive', 'dial', 'reverse', 'services'] as const;
export const KEEPALIVE_MODES = ['fixed', 'adaptive'] as const;
/** Below the server's default registry.stale_after_ms (90 s): a longer interval needs that raised too. */
export const KEEPALIVE_MAX_INTERVAL_MS = 80_000;
export const KEEPALIVE_MIN_INTERVAL_MS = 20_000;

export function checkAgentSettings(doc: Record<string, unknown>, file: string, opts: { minIntervalMs?: number } = {}): AgentSettings {
  const c = new SettingsChecker(file);
  c.unknownKeys(doc, '', TOP, (k) =>
    IDENTITY_KEYS.has(k) ? ' (identity keys belong in the factory identity file, not in settings)' : undefined,
  );
  const server = c.table(doc, 'server', 'server', ['host', 'udp_port', 'tls_port', 'server_name', 'probe_port', 'keep_idle_ms']);
  const reg = c.table(doc, 'registration', 'registration', ['interval_ms', 'local_port']);
  const ka = c.table(doc, 'keepalive', 'keepalive', ['mode', 'min_interval_ms', 'max_interval_ms']);
  const dial = c.table(doc, 'dial', 'dial', [
    'allow_loopback',
    'allow_link_local',
    'allow_private',
    'connect_timeout_ms',
    'direct_timeout_ms',
    'relay_after_ms',
    'hole_punch',
    'max_concurrent',
    'sessions',
  ]);
  const rev = c.table(doc, 'reverse', 'reverse', [
    'enabled',
    'listen_port',
    'port_mapping',
    'mapping_renew_ms',
    'token_timeout_ms',
    'max_pending',
  ]);
  const svc = c.table(doc, 'services', 'services', Object.keys((doc.services as object | undefined) ?? {}));
  const host = c.host(server, 'host', 'server.host', {
    expect: 'the rendezvous server host name (A and/or AAAA) or its IPv4 or IPv6 address',
  });
  const services = new Map<string, HostPort>();
  const problemsBeforeServices = c.problems.length;
  for (const [name, target] of Object.entries(svc)) {
    if (!SERVICE_NAME_PATTERN.test(name)) {
      c.problem(`services.${name}`, 'a service name of 1-32 characters a-z 0-9 . _ - (starting with a letter or digit)', name);
      continue;
    }
    if (isSessionService(name)) {
      c.problem(`services.${name}`, `another name (${name} is what a client asks for to open a session with streams)`, name);
      continue;
    }
    if (typeof target !== 'string') {
      c.problem(`services.${name}`, 'a local "host:port" string', target);
      continue;
    }
    try {
      const hp = parseHostPort(target, `services.${name}`);
      if (hp.port === 0) throw new Error('port 0');
      services.set(name, hp);
    } catch {
      c.problem(`services.${name}`, 'a local "host:port" string such as "127.0.0.1:80" or "[::1]:80"', target);
    }
  }
  const serviceEntriesInvalid = c.problems.length > problemsBeforeServices;
  const minInterval = opts.minIntervalMs ?? MIN_REGISTER_INTERVAL_MS;
  const settings: AgentSettings = {
    identityFile: resolve(dirname(file), c.str(doc, 'identity_file', 'identity_file', { expect: 'the path of the factory identity file' })),
    stateDir: resolve(dirname(file), c.str(doc, 'state_dir', 'state_dir', { default: defaultStateDir() })),
    logLevel: c.enumOf(doc, 'log_level', 'log_level', LOG_LEVELS, 'info'),
    server: {
      host,
      udpPort: c.int(server, 'udp_port', 'server.udp_port', { default: 7400, min: 1, max: 65535 }),
      tlsPort: c.int(server, 'tls_port', 'server.tls_port', { default: 7443, min: 1, max: 65535 }),
      serverName: c.str(server, 'server_name', 'server.server_name', { default: host }),
      probePort: c.int(server, 'probe_port', 'server.probe_port', { default: 0, min: 0, max: 65535 }),
      keepIdleMs: c.int(server, 'keep_idle_ms', 'server.keep_idle_ms', { default: DEVICE_KEEP_IDLE_MS, min: 0, max: 600_000 }),
    },
    registration: {
      intervalMs: c.int(reg, 'interval_ms', 'registration.interval_ms', {
        default: REGISTER_INTERVAL_MS,
        min: minInterval,
        max: 3_600_000,
      }),
      localPort: c.int(reg, 'local_port', 'registration.local_port', { default: 0, min: 0, max: 65535 }),
    },
    keepalive: {
      mode: c.enumOf(ka, 'mode', 'keepalive.mode', KEEPALIVE_MODES, 'adaptive'),
      minIntervalMs: c.int(ka, 'min_interval_ms', 'keepalive.min_interval_ms', {
        default: Math.max(KEEPALIVE_MIN_INTERVAL_MS, minInterval),
        min: minInterval,
        max: 3_600_000,
      }),
      maxIntervalMs: c.int(ka, 'max_interval_ms', 'keepalive.max_interval_ms', {
        default: KEEPALIVE_MAX_INTERVAL_MS,
        min: minInterval,
        max: 3_600_000,
      }),
    },
    dial: {
      allowLoopback: c.bool(dial, 'allow_loopback', 'dial.allow_loopback', false),
      allowLinkLocal: c.bool(dial, 'allow_link_local', 'dial.allow_link_local', false),
      allowPrivate: c.bool(dial, 'allow_private', 'dial.allow_private', false),
      connectTimeoutMs: c.int(dial, 'connect_timeout_ms', 'dial.connect_timeout_ms', {
        default: PEER_CONNECT_TIMEOUT_MS,
        min: 100,
        max: 120_000,
      }),
      directTimeoutMs: c.int(dial, 'direct_timeout_ms', 'dial.direct_timeout_ms', {
        default: DIRECT_DIAL_TIMEOUT_MS,
        min: 100,
        max: 120_000,
      }),
      relayAfterMs: c.int(dial, 'relay_after_ms', 'dial.relay_after_ms', { default: RELAY_AFTER_MS, min: 0, max: 120_000 }),
      holePunch: c.bool(dial, 'hole_punch', 'dial.hole_punch', true),
      maxConcurrent: c.int(dial, 'max_concurrent', 'dial.max_concurrent', { default: 16, min: 1, max: 1024 }),
      sessions: c.bool(dial, 'sessions', 'dial.sessions', true),
    },
    reverse: {
      enabled: c.bool(rev, 'enabled', 'reverse.enabled', true),
      listenPort: c.int(rev, 'listen_port', 'reverse.listen_port', { default: 0, min: 0, max: 65535 }),
      portMapping: c.enumOf(rev, 'port_mapping', 'reverse.port_mapping', MAPPING_MODES, 'auto'),
      mappingRenewMs: c.int(rev, 'mapping_renew_ms', 'reverse.mapping_renew_ms', { default: MAPPING_RENEW_MS, min: 1_000, max: 3_000_000 }),
      tokenTimeoutMs: c.int(rev, 'token_timeout_ms', 'reverse.token_timeout_ms', {
        default: REVERSE_TOKEN_TIMEOUT_MS,
        min: 100,
        max: 60_000,
      }),
      maxPending: c.int(rev, 'max_pending', 'reverse.max_pending', { default: REVERSE_MAX_PENDING_CONNECTIONS, min: 1, max: 4096 }),
    },
    services,
  };
  if (settings.keepalive.maxIntervalMs < settings.keepalive.minIntervalMs) {
    c.problems.push(
      `${file}: keepalive.max_interval_ms: expected at least keepalive.min_interval_ms (${settings.keepalive.minIntervalMs}), found ${settings.keepalive.maxIntervalMs}`,
    );
  }
  if (services.size === 0 && !serviceEntriesInvalid) {
    c.problems.push(`${file}: services: expected at least one service (e.g. http = "127.0.0.1:80"), found none`);
  }
  c.throwIfAny();
  return Object.freeze(settings);
}

export async function loadAgentSettings(file: string): Promise<AgentSettings> {
  const abs = resolve(file);
  const doc = await readTomlFile(abs);
  return checkAgentSettings(doc, abs);
}
