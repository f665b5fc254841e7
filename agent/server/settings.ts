/**
 * The rendezvous server's settings file (TOML). See config/server.example.toml.
 * Relative paths are resolved against the settings file's directory.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError, ErrorCodes, type ErrorCode } from '../common/errors.js';
import { readSecretFile } from '../common/secret-file.js';
import { LOG_LEVELS, readTomlFile, SettingsChecker, type LogLevel } from '../common/settings-checker.js';
import {
  DEVICE_ATTACH_TIMEOUT_MS,
  DEVICE_FORGET_AFTER_MS,
  DEVICE_STALE_AFTER_MS,
  NOTIFY_RETRY_MS,
  REGISTER_CLOCK_WINDOW_MS,
} from '../protocol/constants.js';
import { loadMasterKey } from '../pki/master-key.js';
import { MAX_UNIDENTIFIED_CONNECTIONS } from './connection-tracker.js';
import { CLIENT_CONNECTION_IDLE_MS } from './client-connection.js';
import type { RateLimit } from './rate-limiter.js';
import { SHARED_REFRESH_AFTER_MS } from './redis-registry.js';
import {
  RELAY_BYTES_PER_SECOND,
  RELAY_IDLE_TIMEOUT_MS,
  RELAY_JOIN_TIMEOUT_MS,
  RELAY_MAX_DURATION_MS,
  RELAY_MAX_SESSIONS,
  RELAY_MAX_SESSIONS_PER_DEVICE,
  RELAY_MAX_SESSIONS_PER_SOURCE,
  type RelayLimits,
} from './relay.js';
import { KEPT_IDLE_MAX_MS, MAX_KEPT_DEVICES } from './kept-devices.js';
import { DEFAULT_LIMITS, MAX_PENDING_PER_DEVICE, SHUTDOWN_GRACE_MS, type ServerLimits } from './server.js';

export const DEFAULT_UDP_PORT = 7400;
export const DEFAULT_TLS_PORT = 7443;
export const DEFAULT_METRICS_PORT = 9464;

export interface ServerSettings {
  readonly logLevel: LogLevel;
  readonly udp: { readonly host: string; readonly port: number };
  readonly tls: {
    readonly host: string;
    readonly port: number;
    readonly certFile: string;
    readonly keyFile: string;
    /** Connections in the TLS handshake or before their first frame, together; past it new ones are dropped. */
    readonly maxUnidentifiedConnections: number;
  };
  readonly registrationMasterKeyFile: string;
  readonly registry: { readonly staleAfterMs: number; readonly forgetAfterMs: number; readonly clockWindowMs: number };
  readonly requests: {
    readonly attachTimeoutMs: number;
    readonly notifyRetryMs: number;
    readonly maxPendingPerDevice: number;
    /** Kept device connections (kept-devices.ts): at most this many (0: none), each idle for at most keptIdleMs. */
    readonly maxKeptDevices: number;
    readonly keptIdleMs: number;
    readonly clientIdleMs: number;
  };
  /** The second UDP port that answers probes (diagnose's NAT test); 0 = off. */
  readonly probe: { readonly port: number };
  readonly relay: RelayLimits;
  /** Present: this is one node of several sharing the registry through Redis. */
  readonly redis: {
    readonly url: string | undefined;
    readonly clusterNodes: readonly string[] | undefined;
    readonly refreshAfterMs: number;
    readonly nodeId: string | undefined;
    readonly keyPrefix: string;
    readonly tlsAddress: string | undefined;
    readonly username: string | undefined;
    readonly passwordFile: string | undefined;
  } | null;
  readonly limits: ServerLimits;
  readonly metrics: { readonly enabled: boolean; readonly host: string; readonly port: number };
  readonly shutdown: { readonly graceMs: number };
  /** The operator's deny list file (issue 19); null: none (with redis, the shared list still applies). */
  readonly deny: { readonly file: string | null };
}

const REDIS_URL = /^rediss?:\/\/[^\s]+$/;
const CLUSTER_NODE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):\d{1,5}$/;
const NODE_ID = /^[A-Za-z0-9._:/-]{1,64}$/;

const TOP = [
  'log_level',
  'registration_master_key_file',
  'udp',
  'tls',
  'registry',
  'requests',
  'relay',
  'redis',
  'limits',
  'metrics',
  'shutdown',
  'probe',
  'deny',
] as const;
const LIMIT_KEYS = [
  'registrations_per_source_per_s',
  'registrations_per_source_burst',
  'requests_per_source_per_min',
  'requests_per_source_burst',
  'requests_per_device_per_min',
  'requests_per_device_burst',
  'auth_failures_per_source_per_min',
  'auth_failures_per_source_burst',
] as const;

/** `redis.url` (one Redis) or `redis.cluster_nodes` (Redis Cluster seed nodes), exactly one. */
function redisTarget(
  c: SettingsChecker,
  red: Record<string, unknown>,
): { url: string | undefined; clusterNodes: readonly string[] | undefined } {
  if (red.cluster_nodes === undefined)
    return {
      url: c.str(red, 'url', 'redis.url', { pattern: REDIS_URL, expect: 'a redis:// or rediss:// URL, or cluster_nodes' }),
      clusterNodes: undefined,
    };
  if (red.url !== undefined) c.problem('redis.url', 'either url (one Redis) or cluster_nodes (Redis Cluster), not both', red.url);
  const v = red.cluster_nodes;
  if (!Array.isArray(v) || v.length === 0 || v.length > 64 || !v.every((x) => typeof x === 'string' && CLUSTER_NODE.test(x))) {
    c.problem('redis.cluster_nodes', '1-64 seed nodes as "host:port" strings, e.g. ["10.0.0.5:6379", "10.0.0.6:6379"]', v);
    return { url: undefined, clusterNodes: undefined };
  }
  return { url: undefined, clusterNodes: Object.freeze([...(v as string[])]) };
}

/** `redis.username` / `redis.password_file`: a cluster's password (with `url` it goes in the URL). */
function redisAuth(
  c: SettingsChecker,
  red: Record<string, unknown>,
  base: string,
): { username: string | undefined; passwordFile: string | undefined } {
  if (red.url !== undefined && (red.username !== undefined || red.password_file !== undefined)) {
    c.problem(
      red.password_file !== undefined ? 'redis.password_file' : 'redis.username',
      'with redis.url the user and password go in the URL (redis://user:password@host:port)',
      red.password_file ?? red.username,
    );
  }
  return {
    username:
      red.username === undefined
        ? undefined
        : c.str(red, 'username', 'redis.username', { pattern: /^[!-~]{1,128}$/, expect: 'an ACL user name, 1-128 printable characters' }),
    passwordFile:
      red.password_file === undefined
        ? undefined
        : resolve(
            base,
            c.str(red, 'password_file', 'redis.password_file', { expect: 'the path of a file holding the Redis Cluster password' }),
          ),
  };
}

export function checkServerSettings(doc: Record<string, unknown>, file: string): ServerSettings {
  const c = new SettingsChecker(file);
  const base = dirname(file);
  c.unknownKeys(doc, '', TOP);
  const udp = c.table(doc, 'udp', 'udp', ['host', 'port']);
  const tls = c.table(doc, 'tls', 'tls', ['host', 'port', 'cert_file', 'key_file', 'max_unidentified_connections']);
  const reg = c.table(doc, 'registry', 'registry', ['stale_after_ms', 'forget_after_ms', 'clock_window_ms']);
  const req = c.table(doc, 'requests', 'requests', [
    'attach_timeout_ms',
    'notify_retry_ms',
    'max_pending_per_device',
    'max_kept_devices',
    'kept_idle_ms',
    'client_idle_ms',
  ]);
  const rel = c.table(doc, 'relay', 'relay', [
    'max_sessions',
    'bytes_per_second',
    'max_duration_ms',
    'join_timeout_ms',
    'max_sessions_per_device',
    'plain_legs',
    'max_sessions_per_source',
    'idle_timeout_ms',
  ]);
  const red = c.table(doc, 'redis', 'redis', [
    'url',
    'cluster_nodes',
    'refresh_after_ms',
    'node_id',
    'key_prefix',
    'tls_address',
    'username',
    'password_file',
  ]);
  const lim = c.table(doc, 'limits', 'limits', LIMIT_KEYS);
  const met = c.table(doc, 'metrics', 'metrics', ['enabled', 'host', 'port']);
  const shut = c.table(doc, 'shutdown', 'shutdown', ['grace_ms']);
  const limit = (key: string, per: 's' | 'min', def: RateLimit): RateLimit => {
    const scale = per === 's' ? 1 : 60;
    const rate = c.int(lim, `${key}_per_${per}`, `limits.${key}_per_${per}`, {
      default: Math.round(def.perSecond * scale),
      min: 0,
      max: 10_000_000,
    });
    const burst = c.int(lim, `${key}_burst`, `limits.${key}_burst`, { default: def.burst, min: 1, max: 10_000_000 });
    return Object.freeze({ perSecond: rate / scale, burst });
  };
  const probe = c.table(doc, 'probe', 'probe', ['port']);
  const deny = c.table(doc, 'deny', 'deny', ['file']);
  const settings: ServerSettings = {
    logLevel: c.enumOf(doc, 'log_level', 'log_level', LOG_LEVELS, 'info'),
    udp: {
      // Both families (listen.ts DUAL_STACK_HOST; IPv4 only where the host has no IPv6).
      host: c.host(udp, 'host', 'udp.host', { default: '::' }),
      port: c.int(udp, 'port', 'udp.port', { default: DEFAULT_UDP_PORT, min: 0, max: 65535 }),
    },
    tls: {
      host: c.host(tls, 'host', 'tls.host', { default: '::' }),
      port: c.int(tls, 'port', 'tls.port', { default: DEFAULT_TLS_PORT, min: 0, max: 65535 }),
      certFile: resolve(base, c.str(tls, 'cert_file', 'tls.cert_file', { expect: 'the path of the server certificate (PEM)' })),
      keyFile: resolve(base, c.str(tls, 'key_file', 'tls.key_file', { expect: 'the path of the server private key (PEM)' })),
      maxUnidentifiedConnections: c.int(tls, 'max_unidentified_connections', 'tls.max_unidentified_connections', {
        default: MAX_UNIDENTIFIED_CONNECTIONS,
        min: 1,
        max: 1_000_000,
      }),
    },
    registrationMasterKeyFile: resolve(
      base,
      c.str(doc, 'registration_master_key_file', 'registration_master_key_file', { expect: 'the path of the registration master key' }),
    ),
    registry: {
      staleAfterMs: c.int(reg, 'stale_after_ms', 'registry.stale_after_ms', { default: DEVICE_STALE_AFTER_MS, min: 1000, max: 86_400_000 }),
      forgetAfterMs: c.int(reg, 'forget_after_ms', 'registry.forget_after_ms', {
        default: DEVICE_FORGET_AFTER_MS,
        min: 1000,
        max: 30 * 86_400_000,
      }),
      clockWindowMs: c.int(reg, 'clock_window_ms', 'registry.clock_window_ms', {
        default: REGISTER_CLOCK_WINDOW_MS,
        min: 1000,
        max: 3_600_000,
      }),
    },
    requests: {
      attachTimeoutMs: c.int(req, 'attach_timeout_ms', 'requests.attach_timeout_ms', {
        default: DEVICE_ATTACH_TIMEOUT_MS,
        min: 100,
        max: 120_000,
      }),
      notifyRetryMs: c.int(req, 'notify_retry_ms', 'requests.notify_retry_ms', { default: NOTIFY_RETRY_MS, min: 50, max: 60_000 }),
      maxPendingPerDevice: c.int(req, 'max_pending_per_device', 'requests.max_pending_per_device', {
        default: MAX_PENDING_PER_DEVICE,
        min: 1,
        max: 1000,
      }),
      maxKeptDevices: c.int(req, 'max_kept_devices', 'requests.max_kept_devices', { default: MAX_KEPT_DEVICES, min: 0, max: 1_000_000 }),
      keptIdleMs: c.int(req, 'kept_idle_ms', 'requests.kept_idle_ms', { default: KEPT_IDLE_MAX_MS, min: 100, max: 3_600_000 }),
      clientIdleMs: c.int(req, 'client_idle_ms', 'requests.client_idle_ms', { default: CLIENT_CONNECTION_IDLE_MS, min: 0, max: 600_000 }),
    },
    probe: { port: c.int(probe, 'port', 'probe.port', { default: 0, min: 0, max: 65535 }) },
    relay: {
      maxSessions: c.int(rel, 'max_sessions', 'relay.max_sessions', { default: RELAY_MAX_SESSIONS, min: 0, max: 1_000_000 }),
      bytesPerSecond: c.int(rel, 'bytes_per_second', 'relay.bytes_per_second', {
        default: RELAY_BYTES_PER_SECOND,
        min: 1024,
        max: 10_000_000_000,
      }),
      maxDurationMs: c.int(rel, 'max_duration_ms', 'relay.max_duration_ms', {
        default: RELAY_MAX_DURATION_MS,
        min: 1000,
        max: 7 * 86_400_000,
      }),
      joinTimeoutMs: c.int(rel, 'join_timeout_ms', 'relay.join_timeout_ms', { default: RELAY_JOIN_TIMEOUT_MS, min: 1000, max: 600_000 }),
      maxSessionsPerDevice: c.int(rel, 'max_sessions_per_device', 'relay.max_sessions_per_device', {
        default: RELAY_MAX_SESSIONS_PER_DEVICE,
        min: 1,
        max: 1_000_000,
      }),
      maxSessionsPerSource: c.int(rel, 'max_sessions_per_source', 'relay.max_sessions_per_source', {
        default: RELAY_MAX_SESSIONS_PER_SOURCE,
        min: 1,
        max: 1_000_000,
      }),
      idleTimeoutMs: c.int(rel, 'idle_timeout_ms', 'relay.idle_timeout_ms', {
        default: RELAY_IDLE_TIMEOUT_MS,
        min: 1000,
        max: 7 * 86_400_000,
      }),
      plainLegs: c.bool(rel, 'plain_legs', 'relay.plain_legs', true),
    },
    redis:
      doc.redis === undefined
        ? null
        : {
            ...redisTarget(c, red),
            refreshAfterMs: c.int(red, 'refresh_after_ms', 'redis.refresh_after_ms', {
              default: SHARED_REFRESH_AFTER_MS,
              min: 1000,
              max: 3_600_000,
            }),
            nodeId:
              red.node_id === undefined
                ? undefined
                : c.str(red, 'node_id', 'redis.node_id', { pattern: NODE_ID, expect: '1-64 of A-Z a-z 0-9 . _ : / -' }),
            tlsAddress:
              red.tls_address === undefined
                ? undefined
                : c.str(red, 'tls_address', 'redis.tls_address', {
                    pattern: /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/,
                    expect: '"host:port" where the other nodes reach this node\'s TLS port',
                  }),
            keyPrefix: c.str(red, 'key_prefix', 'redis.key_prefix', {
              default: 'pl:',
              pattern: /^[A-Za-z0-9._:-]{0,32}$/,
              expect: 'up to 32 of A-Z a-z 0-9 . _ : -',
            }),
            ...redisAuth(c, red, base),
          },
    limits: Object.freeze({
      registrationsPerSource: limit('registrations_per_source', 's', DEFAULT_LIMITS.registrationsPerSource),
      requestsPerSource: limit('requests_per_source', 'min', DEFAULT_LIMITS.requestsPerSource),
      requestsPerDevice: limit('requests_per_device', 'min', DEFAULT_LIMITS.requestsPerDevice),
      authFailuresPerSource: limit('auth_failures_per_source', 'min', DEFAULT_LIMITS.authFailuresPerSource),
    }),
    metrics: {
      enabled: c.bool(met, 'enabled', 'metrics.enabled', false),
      host: c.host(met, 'host', 'metrics.host', { default: '127.0.0.1' }),
      port: c.int(met, 'port', 'metrics.port', { default: DEFAULT_METRICS_PORT, min: 0, max: 65535 }),
    },
    shutdown: { graceMs: c.int(shut, 'grace_ms', 'shutdown.grace_ms', { default: SHUTDOWN_GRACE_MS, min: 0, max: 600_000 }) },
    deny: {
      file:
        deny.file === undefined
          ? null
          : resolve(base, c.str(deny, 'file', 'deny.file', { expect: 'the path of the deny list (one equipment ID a line)' })),
    },
  };
  c.throwIfAny();
  return Object.freeze(settings);
}

export async function loadServerSettings(file: string): Promise<ServerSettings> {
  return checkServerSettings(await readTomlFile(file), resolve(file));
}

export interface ServerSecrets {
  readonly certPem: string;
  readonly keyPem: string;
  readonly masterKey: Buffer;
  /** `redis.password_file`'s content, without its trailing newline. */
  readonly redisPassword?: string;
}

/** Read the files the settings name; every unreadable or malformed one is reported. */
export async function loadServerSecrets(s: ServerSettings): Promise<ServerSecrets> {
  const problems: string[] = [];
  const read = async (file: string, what: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      problems.push(`${file}: cannot read ${what}: ${(err as Error).message}`);
      return '';
    }
  };
  let code: ErrorCode | undefined;
  const [certPem, keyPem, masterKey] = await Promise.all([
    read(s.tls.certFile, 'tls.cert_file'),
    // The private key is refused when group or others may read it (like ssh), checked on the descriptor read.
    readSecretFile(s.tls.keyFile, { what: 'the server private key (tls.key_file)' }).catch((err: unknown) => {
      if (err instanceof ConfigError && err.code === ErrorCodes.SECRET_FILE_PERMISSIONS) code = err.code;
      problems.push(...(err instanceof ConfigError ? err.problems : [String(err)]));
      return '';
    }),
    // The master key file must be 0600 and exact base64 of 32 bytes (see pki/master-key.ts).
    loadMasterKey(s.registrationMasterKeyFile).catch((err: unknown) => {
      problems.push(...(err instanceof ConfigError ? err.problems : [String(err)]));
      return Buffer.alloc(0);
    }),
  ]);
  let redisPassword: string | undefined;
  if (s.redis?.passwordFile !== undefined) {
    // Like the TLS key: refused when group or others may read it.
    redisPassword = await readSecretFile(s.redis.passwordFile, { what: 'the Redis password (redis.password_file)' })
      .then((text) => {
        const pw = text.replace(/\r?\n$/, '');
        if (pw === '' || /[\r\n]/.test(pw))
          problems.push(`${s.redis!.passwordFile}: redis.password_file must hold the password on one line`);
        return pw;
      })
      .catch((err: unknown) => {
        if (err instanceof ConfigError && err.code === ErrorCodes.SECRET_FILE_PERMISSIONS) code = err.code;
        problems.push(...(err instanceof ConfigError ? err.problems : [String(err)]));
        return undefined;
      });
  }
  if (problems.length > 0) throw new ConfigError(problems, code ? { code } : undefined);
  return { certPem, keyPem, masterKey, ...(redisPassword !== undefined ? { redisPassword } : {}) };
}
