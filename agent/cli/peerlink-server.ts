#!/usr/bin/env node
/** peerlink-server [run] [--config FILE] [--instance N] | check-config [--config FILE] [--instance N] | deny add|remove|list [ID] */
import { parseArgs } from 'node:util';
import { createLogger, type Logger } from '../common/logger.js';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createRendezvousServer, type RendezvousServer, type RendezvousServerOptions } from '../server/server.js';
import { instanceSettings, MAX_INSTANCE } from '../server/instance.js';
import { loadServerSecrets, loadServerSettings, type ServerSecrets, type ServerSettings } from '../server/settings.js';
import { createNotifier } from '../systemd/notify.js';
import { createWatchdog } from '../systemd/watchdog.js';
import { exitIfStopHangs, onceSignal, reportAndExit } from './run-main.js';
import { DENY_USAGE, denyCommand } from './deny-command.js';

const PROGRAM = 'peerlink-server';
/** How long past shutdown.grace_ms a SIGTERM may take before the process exits anyway. */
const SHUTDOWN_OVERRUN_MS = 1_500;
const DEFAULT_CONFIG = '/etc/peerlink/server.toml';
const USAGE = `usage: ${PROGRAM} [run] [--config FILE] [--instance N]   run the rendezvous server (default config ${DEFAULT_CONFIG})
       ${PROGRAM} check-config [--config FILE] [--instance N]   validate the settings and the files they name, then exit
  --instance N   node N (0-${MAX_INSTANCE}) of several on this machine: every port + N, redis.node_id + "-N"
${DENY_USAGE}`;

/** Re-read tls.cert_file and tls.key_file; serve them if they are a valid, current pair, else keep the old. */
async function reloadCertificate(file: string, server: RendezvousServer, logger: Logger): Promise<void> {
  try {
    const settings = await loadServerSettings(file);
    const { certPem, keyPem } = await loadServerSecrets(settings);
    const cert = new X509Certificate(certPem);
    const now = Date.now();
    if (Date.parse(cert.validTo) <= now || Date.parse(cert.validFrom) > now) {
      throw new Error(`${settings.tls.certFile}: not valid now (valid ${cert.validFrom} to ${cert.validTo})`);
    }
    if (!cert.checkPrivateKey(createPrivateKey(keyPem)))
      throw new Error(`${settings.tls.keyFile}: not the key of ${settings.tls.certFile}`);
    server.setCertificate(certPem, keyPem);
    logger.info({ certFile: settings.tls.certFile, validTo: cert.validTo }, 'server certificate reloaded');
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message;
    logger.error({ err: problems }, 'server certificate not reloaded: keeping the one in use');
  }
}

async function main(): Promise<void> {
  const parsed = parse();
  if (!parsed) return;
  const { command, file, instance, args } = parsed;
  const loaded = await loadServerSettings(file);
  let settings = loaded;
  try {
    settings = instance === undefined ? loaded : instanceSettings(loaded, instance, file);
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }
  // The operator's deny list needs the settings only (where the list is), not the server's secrets.
  if (command === 'deny') return denyCommand(args, settings);
  const secrets = await loadServerSecrets(settings);
  if (command === 'check-config') {
    process.stdout.write(`${file}: ok\n`);
    return;
  }
  await runMain(file, settings, secrets);
}

/** The command and the settings file; null after --help. */
function parse(): { command: 'run' | 'check-config' | 'deny'; file: string; instance?: number; args: readonly string[] } | null {
  let parsed;
  try {
    parsed = parseArgs({
      options: { config: { type: 'string', short: 'c' }, instance: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    });
  } catch (err) {
    throw new ConfigError([`${(err as Error).message}\n${USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return null;
  }
  const command = (parsed.positionals[0] ?? 'run') as 'run' | 'check-config' | 'deny';
  if (command !== 'deny' && ((command !== 'run' && command !== 'check-config') || parsed.positionals.length > 1)) {
    throw new ConfigError([`unknown command ${JSON.stringify(parsed.positionals.join(' '))}\n${USAGE}`], {
      code: ErrorCodes.OPTIONS_INVALID,
    });
  }
  const instance = parsed.values.instance;
  if (instance !== undefined && !(/^\d{1,3}$/.test(instance) && Number(instance) <= MAX_INSTANCE)) {
    throw new ConfigError([`--instance: expected an integer from 0 to ${MAX_INSTANCE}, found ${JSON.stringify(instance)}\n${USAGE}`], {
      code: ErrorCodes.OPTIONS_INVALID,
    });
  }
  return {
    command,
    file: parsed.values.config ?? DEFAULT_CONFIG,
    ...(instance !== undefined ? { instance: Number(instance) } : {}),
    args: parsed.positionals.slice(1),
  };
}

/** The settings file's sections as the server's options. */
function serverOptions(settings: ServerSettings, secrets: ServerSecrets, logger: Logger): RendezvousServerOptions {
  return {
    udpHost: settings.udp.host,
    udpPort: settings.udp.port,
    tlsHost: settings.tls.host,
    tlsPort: settings.tls.port,
    maxUnidentifiedConnections: settings.tls.maxUnidentifiedConnections,
    certPem: secrets.certPem,
    keyPem: secrets.keyPem,
    masterKey: secrets.masterKey,
    logger,
    staleAfterMs: settings.registry.staleAfterMs,
    forgetAfterMs: settings.registry.forgetAfterMs,
    clockWindowMs: settings.registry.clockWindowMs,
    attachTimeoutMs: settings.requests.attachTimeoutMs,
    notifyRetryMs: settings.requests.notifyRetryMs,
    maxPendingPerDevice: settings.requests.maxPendingPerDevice,
    keptDevices: { max: settings.requests.maxKeptDevices, idleMs: settings.requests.keptIdleMs },
    clientIdleMs: settings.requests.clientIdleMs,
    relay: settings.relay,
    limits: settings.limits,
    shutdownGraceMs: settings.shutdown.graceMs,
    ...(settings.redis
      ? {
          redis: {
            ...(settings.redis.url !== undefined ? { url: settings.redis.url } : {}),
            ...(settings.redis.clusterNodes ? { clusterNodes: settings.redis.clusterNodes } : {}),
            refreshAfterMs: settings.redis.refreshAfterMs,
            keyPrefix: settings.redis.keyPrefix,
            ...(settings.redis.tlsAddress ? { tlsAddress: settings.redis.tlsAddress } : {}),
            ...(settings.redis.username !== undefined ? { username: settings.redis.username } : {}),
            ...(secrets.redisPassword !== undefined ? { password: secrets.redisPassword } : {}),
          },
          ...(settings.redis.nodeId ? { nodeId: settings.redis.nodeId } : {}),
        }
      : {}),
    ...(settings.metrics.enabled ? { metrics: { host: settings.metrics.host, port: settings.metrics.port } } : {}),
    probePort: settings.probe.port,
    ...(settings.deny.file ? { denyFile: settings.deny.file } : {}),
  };
}

/** run: listen, tell systemd, and stop gracefully at SIGTERM/SIGINT (a second one exits at once). */
async function runMain(file: string, settings: ServerSettings, secrets: ServerSecrets): Promise<void> {
  const logger = createLogger({ name: PROGRAM, level: settings.logLevel });
  const server = createRendezvousServer(serverOptions(settings, secrets, logger));
  await server.start();
  logger.info(
    {
      udp: server.udpAddress(),
      tls: server.tlsAddress(),
      metrics: server.metricsAddress(),
      node: server.nodeId,
      backend: server.backend.kind,
    },
    'rendezvous server listening',
  );
  // systemd (Type=notify): ready once listening; the watchdog pings prove the event loop turns.
  const notifier = createNotifier({ logger });
  const watchdog = createWatchdog({ notifier, health: () => ({ ok: true }), logger });
  const at = (a: { address: string; port: number }): string => `${a.address}:${a.port}`;
  const listening = `listening on udp ${at(server.udpAddress())}, tls ${at(server.tlsAddress())}`;
  void notifier.send({ READY: '1', STATUS: listening });
  watchdog.start();
  // SIGUSR2 prints the equipment list (patent Fig. 9) to the log, for operators and the lab.
  process.on('SIGUSR2', () => {
    const list = [...server.registry.entries()].map(([id, e]) => ({ id, address: e.address, port: e.port, lastSeenMs: e.lastSeenMs }));
    logger.info({ equipmentList: list, counters: server.registration.counters.snapshot() }, 'equipment list');
  });
  // SIGHUP (systemctl reload) takes a renewed certificate (`peerlink-provision renew-server-cert`)
  // without a restart: the registry and the requests in flight stay. A bad one keeps the old.
  process.on('SIGHUP', () => void reloadCertificate(file, server, logger));
  const sig = await onceSignal(['SIGTERM', 'SIGINT']);
  logger.info({ signal: sig, graceMs: settings.shutdown.graceMs }, 'stopping: no new requests; finishing those in flight');
  watchdog.stop();
  await notifier.send({ STOPPING: '1', STATUS: 'stopping: finishing requests in flight' });
  // A second signal cuts the drain short.
  void onceSignal(['SIGTERM', 'SIGINT']).then(() => {
    logger.warn('second signal: exiting without waiting');
    process.exit(0);
  });
  // The stop destroys every connection once the grace is over; this is the backstop should some
  // close still hang (a Redis quit, a socket nobody tracks): the process ends regardless.
  exitIfStopHangs(settings.shutdown.graceMs + SHUTDOWN_OVERRUN_MS, logger);
  await server.stop();
  logger.info('stopped');
}

main().catch((err) => reportAndExit(PROGRAM, err));
