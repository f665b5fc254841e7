/**
 * What a settings reload (SIGHUP) can apply at once, and what needs a restart. Hot: the
 * services allow-list and the dial policy (read per request). Restart: everything the
 * registration loop, the reverse port (and its router mapping) and the logger were built with;
 * a change there is reported, not applied.
 */
import type { AgentSettings } from './settings.js';

/** Setting key paths (as in the TOML file) a running agent cannot change. */
export const RESTART_REQUIRED_KEYS = [
  'identity_file',
  'state_dir',
  'log_level',
  'server.host',
  'server.udp_port',
  'server.tls_port',
  'server.server_name',
  'registration.interval_ms',
  'registration.local_port',
  'keepalive.mode',
  'keepalive.min_interval_ms',
  'keepalive.max_interval_ms',
  'reverse.enabled',
  'reverse.listen_port',
  'reverse.port_mapping',
  'reverse.mapping_renew_ms',
  'reverse.token_timeout_ms',
  'reverse.max_pending',
] as const;

const read: Record<(typeof RESTART_REQUIRED_KEYS)[number], (s: AgentSettings) => unknown> = {
  identity_file: (s) => s.identityFile,
  state_dir: (s) => s.stateDir,
  log_level: (s) => s.logLevel,
  'server.host': (s) => s.server.host,
  'server.udp_port': (s) => s.server.udpPort,
  'server.tls_port': (s) => s.server.tlsPort,
  'server.server_name': (s) => s.server.serverName,
  'registration.interval_ms': (s) => s.registration.intervalMs,
  'registration.local_port': (s) => s.registration.localPort,
  'keepalive.mode': (s) => s.keepalive.mode,
  'keepalive.min_interval_ms': (s) => s.keepalive.minIntervalMs,
  'keepalive.max_interval_ms': (s) => s.keepalive.maxIntervalMs,
  'reverse.enabled': (s) => s.reverse.enabled,
  'reverse.listen_port': (s) => s.reverse.listenPort,
  'reverse.port_mapping': (s) => s.reverse.portMapping,
  'reverse.mapping_renew_ms': (s) => s.reverse.mappingRenewMs,
  'reverse.token_timeout_ms': (s) => s.reverse.tokenTimeoutMs,
  'reverse.max_pending': (s) => s.reverse.maxPending,
};

/** The restart-required keys whose value differs between the running and the new settings. */
export function restartRequiredChanges(running: AgentSettings, next: AgentSettings): string[] {
  return RESTART_REQUIRED_KEYS.filter((k) => read[k](running) !== read[k](next));
}

/**
 * The settings to apply on reload: the new hot keys, with every restart-required key kept at
 * its running value (so the server used for TLS stays the one we register with).
 */
export function hotReloadable(running: AgentSettings, next: AgentSettings): AgentSettings {
  return Object.freeze({
    ...next,
    identityFile: running.identityFile,
    stateDir: running.stateDir,
    logLevel: running.logLevel,
    // server.keep_idle_ms is hot (the next request's connection is kept for the new time, or not).
    server: { ...running.server, keepIdleMs: next.server.keepIdleMs },
    registration: running.registration,
    keepalive: running.keepalive,
    reverse: running.reverse,
  });
}
