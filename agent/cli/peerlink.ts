#!/usr/bin/env node
/**
 * peerlink connect <equipment-id> --server HOST:PORT --ca CA.pem --password-file FILE
 *                  --service NAME (--listen HOST:PORT | --stdio)
 *                  [--accept HOST:PORT] [--advertise-port N] [--server-name NAME] [--log-level L]
 * peerlink pair | device clients|revoke|rename|set-password   (owner-commands.ts)
 */
import { readFile } from 'node:fs/promises';
import { readSecretFile } from '../common/secret-file.js';
import { parseArgs } from 'node:util';
import { createClient, SESSION_IDLE_MS, type Tunnel } from '../client/client.js';
import { createLocalForward } from '../client/local-forward.js';
import { SESSION_MAX_STREAMS } from '../protocol/session-streams.js';
import { parseHostPort, type HostPort } from '../common/endpoint-parse.js';
import { createLogger } from '../common/logger.js';
import { ConfigError, ErrorCodes, PeerlinkError } from '../common/errors.js';
import { exitIfStopHangs, onceSignal, reportAndExit, STOP_BACKSTOP_MS } from './run-main.js';
import { MAPPING_MODES, type MappingMode } from '../nat/port-mapping.js';
import { CONNECT_URI_SCHEME, parseConnectUri } from '../protocol/connect-uri.js';
import { OWNER_USAGE, ownerCommand } from './owner-commands.js';
import { defaultPairingDir, loadPairing } from '../client/pairings.js';

const PROGRAM = 'peerlink';
const USAGE = `usage: ${PROGRAM} connect <equipment-id> --server HOST:PORT --ca CA.pem --password-file FILE
       ${PROGRAM} connect 'peerlink://connect?v=1&id=...&pw=...[&server=...]' --ca CA.pem   (the label's QR code)
                --service NAME (--listen HOST:PORT | --stdio)
                [--accept HOST:PORT] [--advertise-port N] [--server-name NAME] [--log-level LEVEL]
                [--peer-timeout-ms MS] [--map-port off|auto|upnp|natpmp] [--session-idle-ms MS]
                [--probe-ports UDP,PROBE]

  --server          the rendezvous server's TLS endpoint
  --ca              the CA certificate that signs the server's certificate
  --password-file   file whose first line is the device's access password
  --service         the device service to reach (must be in the device's allow-list)
  --listen          serve the device's service on this local TCP port (like ssh -L)
  --stdio           serve one tunnel on stdin/stdout (ssh -o ProxyCommand="peerlink connect ... --stdio")
  --accept          local address where the device's direct connection arrives (default [::]:0, IPv4 and IPv6)
  --advertise-port  the public port the device should dial (your NAT's static or UPnP mapping of --accept)
  --server-name     name expected in the server certificate (default: the --server host)
  --log-level       fatal|error|warn|info|debug (default warn; logs go to stderr)
  --peer-timeout-ms how long to wait for the device's direct connection once it accepted (default 10000)
  --map-port        ask the router to forward the --accept port: UPnP IGD v1/v2 or NAT-PMP (default off)
  --pairing-dir     where pairings are kept (default ~/.config/peerlink/pairings); connect uses the device's
                    pairing there instead of the password when there is one
  --session-idle-ms --listen: one session with the device carries a stream per local connection;
                    it closes after this long without one (default 30000; 0: a tunnel per connection)
  --probe-ports     the server's UDP registration and probe ports (its udp.port and [probe] port, e.g.
                    7400,7401): each request learns whether our NAT maps per destination, and where no
                    direct path can come the relay starts at once (default: not checked)
${OWNER_USAGE}`;

function usage(message: string): ConfigError {
  return new ConfigError([`${message}\n${USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });
}

const OPTIONS = {
  server: { type: 'string' },
  ca: { type: 'string' },
  'password-file': { type: 'string' },
  service: { type: 'string' },
  listen: { type: 'string' },
  stdio: { type: 'boolean' },
  accept: { type: 'string' },
  'advertise-port': { type: 'string' },
  'server-name': { type: 'string' },
  'log-level': { type: 'string' },
  'peer-timeout-ms': { type: 'string' },
  'map-port': { type: 'string' },
  'pairing-dir': { type: 'string' },
  // pair and device commands (owner-commands.ts)
  name: { type: 'string' },
  json: { type: 'boolean' },
  'new-password-file': { type: 'string' },
  'keep-pairings': { type: 'boolean' },
  'drop-pairings': { type: 'boolean' },
  'session-idle-ms': { type: 'string' },
  'probe-ports': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** The command line, checked: everything `connect` needs but the files' contents. */
interface ConnectArgs {
  readonly v: Values;
  readonly equipmentId: string;
  readonly uri: ReturnType<typeof parseConnectUri> | null;
  readonly advertisePort: number | undefined;
  readonly peerTimeoutMs: number | undefined;
  readonly mapPort: MappingMode;
  readonly server: HostPort;
  readonly sessionIdleMs: number;
  readonly probePorts: { readonly udpPort: number; readonly probePort: number } | undefined;
}

async function main(): Promise<void> {
  const parsed = parse();
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const command = parsed.positionals[0];
  if (command === 'pair' || command === 'device') return ownerCommand(parsed.positionals, parsed.values);
  const args = checkConnect(parsed.values, parsed.positionals);
  const { caPem, secret } = await loadFiles(args);
  await runConnect(args, caPem, secret);
}

/** What the client proves itself with: its stored pairing's key (peerlink pair), else the password. */
type Secret = { readonly password: string } | { readonly accessKey: Buffer };

function parse() {
  try {
    return parseArgs({ options: OPTIONS, allowPositionals: true });
  } catch (err) {
    throw usage((err as Error).message);
  }
}

function checkConnect(v: Values, positionals: readonly string[]): ConnectArgs {
  const [command, target, ...extra] = positionals;
  if (command !== 'connect' || !target || extra.length) throw usage('expected: connect <equipment-id | peerlink://connect?...>');
  // The label's QR code: ID, password and (when the factory knew it) the server, in one URI.
  // (A command line is visible to other local users: on a shared machine prefer --password-file.)
  const uri = target.startsWith(CONNECT_URI_SCHEME) ? parseConnectUri(target) : null;
  const equipmentId = uri?.equipmentId ?? target;
  if (!v.server && uri?.server) v.server = uri.server;
  for (const k of ['server', 'ca', 'service'] as const) if (!v[k]) throw usage(`--${k} is required`);
  if (Boolean(v.listen) === Boolean(v.stdio)) throw usage('give exactly one of --listen HOST:PORT or --stdio');
  const advertisePort = v['advertise-port'] === undefined ? undefined : Number(v['advertise-port']);
  if (advertisePort !== undefined && !(Number.isInteger(advertisePort) && advertisePort > 0 && advertisePort < 65536)) {
    throw usage(`--advertise-port: expected 1-65535, found ${JSON.stringify(v['advertise-port'])}`);
  }
  const peerTimeoutMs = v['peer-timeout-ms'] === undefined ? undefined : Number(v['peer-timeout-ms']);
  if (peerTimeoutMs !== undefined && !(Number.isInteger(peerTimeoutMs) && peerTimeoutMs >= 100 && peerTimeoutMs <= 600_000)) {
    throw usage(`--peer-timeout-ms: expected 100-600000, found ${JSON.stringify(v['peer-timeout-ms'])}`);
  }
  const mapPort = (v['map-port'] ?? 'off') as MappingMode;
  if (!MAPPING_MODES.includes(mapPort))
    throw usage(`--map-port: expected one of ${MAPPING_MODES.join(', ')}, found ${JSON.stringify(v['map-port'])}`);
  const server = parseHostPort(v.server!, '--server');
  const sessionIdleMs = v['session-idle-ms'] === undefined ? SESSION_IDLE_MS : Number(v['session-idle-ms']);
  if (!(Number.isInteger(sessionIdleMs) && sessionIdleMs >= 0 && sessionIdleMs <= 86_400_000)) {
    throw usage(`--session-idle-ms: expected 0-86400000, found ${JSON.stringify(v['session-idle-ms'])}`);
  }
  let probePorts: ConnectArgs['probePorts'];
  if (v['probe-ports'] !== undefined) {
    const m = /^(\d{1,5}),(\d{1,5})$/.exec(v['probe-ports']);
    const [udpPort, probePort] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
    if (!(udpPort > 0 && udpPort < 65536 && probePort > 0 && probePort < 65536 && udpPort !== probePort))
      throw usage(`--probe-ports: expected two different ports UDP,PROBE (e.g. 7400,7401), found ${JSON.stringify(v['probe-ports'])}`);
    probePorts = { udpPort, probePort };
  }
  return { v, equipmentId, uri, advertisePort, peerTimeoutMs, mapPort, server, sessionIdleMs, probePorts };
}

/** The CA certificate, and the stored pairing's key or else the password (from its file, or the label's URI). */
async function loadFiles({ v, uri, equipmentId }: ConnectArgs): Promise<{ caPem: string; secret: Secret }> {
  const readText = async (file: string, flag: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`${flag} ${file}: ${(err as Error).message}`]);
    }
  };
  const caPem = await readText(v.ca!, '--ca');
  const pairing = await loadPairing(v['pairing-dir'] ?? defaultPairingDir(), equipmentId);
  if (pairing) return { caPem, secret: { accessKey: pairing.key } };
  if (!uri && !v['password-file']) throw usage("--password-file is required (or give the label's peerlink:// URI, or pair first)");
  const password =
    uri && !v['password-file']
      ? uri.password
      : (await readSecretFile(v['password-file']!, { what: 'the device password', label: `--password-file ${v['password-file']}` }))
          .split('\n')[0]!
          .trim();
  if (!password) throw new ConfigError([`--password-file ${v['password-file']}: the first line is empty`]);
  return { caPem, secret: { password } };
}

async function runConnect(args: ConnectArgs, caPem: string, secret: Secret): Promise<void> {
  const { v, equipmentId, advertisePort, peerTimeoutMs, mapPort, server, sessionIdleMs, probePorts } = args;
  const logger = createLogger({ name: PROGRAM, level: v['log-level'] ?? 'warn', destination: 2 });
  const client = createClient({
    server,
    caPem,
    equipmentId,
    ...secret,
    service: v.service!,
    accept: v.accept ? parseHostPort(v.accept, '--accept') : { host: '::', port: 0 },
    ...(v['server-name'] ? { serverName: v['server-name'] } : {}),
    ...(advertisePort ? { advertisePort } : {}),
    ...(peerTimeoutMs ? { peerTimeoutMs } : {}),
    mapPort,
    ...(probePorts ? { probePorts } : {}),
    // --stdio carries one connection: a plain tunnel.
    sessionIdleMs: v.stdio ? 0 : sessionIdleMs,
    logger,
  });
  const aborter = new AbortController();
  const stopSignals = onceSignal(['SIGINT', 'SIGTERM']).then(() => {
    exitIfStopHangs(STOP_BACKSTOP_MS, logger);
    aborter.abort();
  });
  void stopSignals;
  let forward: ReturnType<typeof createLocalForward> | null = null;
  try {
    const opening = client.open(aborter.signal);
    if (!v.stdio) {
      // The port opens at once: a script that starts us and then connects is held until the first
      // tunnel is up (or closed if it fails), not refused.
      opening.catch(() => undefined);
      // With a session a waiting connection costs a stream (no server work): let a page's worth wait.
      const maxPending = sessionIdleMs > 0 ? { maxPending: SESSION_MAX_STREAMS } : {};
      forward = createLocalForward({ client, listen: parseHostPort(v.listen!, '--listen'), logger, first: opening, ...maxPending });
      await forward.start();
    }
    const first = await opening;
    process.stderr.write(`${PROGRAM}: ${first.path} in ${Math.round(first.connectMs)} ms\n`);
    if (v.stdio) return await serveStdio(first, aborter.signal);
    const at = forward!.address();
    process.stderr.write(`${PROGRAM}: serving ${equipmentId}/${v.service} on ${at.address}:${at.port}\n`);
    await new Promise<void>((resolve) => aborter.signal.addEventListener('abort', () => resolve(), { once: true }));
  } finally {
    await forward?.stop();
    await client.stop();
  }
}

/** --stdio: stdin -> tunnel (half-close passed on at EOF), tunnel -> stdout; done when the tunnel closes. */
async function serveStdio(first: Tunnel, stop: AbortSignal): Promise<void> {
  process.stdin.pipe(first.stream);
  first.stream.pipe(process.stdout);
  let failure: Error | null = null;
  first.stream.once('error', (err) => (failure = err));
  // SIGINT/SIGTERM: the user ends the session; the tunnel must not keep the process alive.
  const onSignal = (): void => void first.stream.destroy();
  stop.addEventListener('abort', onSignal, { once: true });
  await new Promise<void>((resolve) => first.stream.once('close', () => resolve()));
  stop.removeEventListener('abort', onSignal);
  if (stop.aborted) return;
  // A tunnel that closed without the device's orderly end (TLS close_notify) lost data: say so.
  if (failure !== null || !first.stream.readableEnded) {
    throw new PeerlinkError(
      ErrorCodes.TUNNEL_BROKEN,
      `the tunnel broke before the device finished${failure ? `: ${(failure as Error).message}` : ''}`,
    );
  }
  // stdout is asynchronous on a pipe: let what is queued reach it before the process exits.
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
}

main().then(
  () => process.exit(0),
  (err) => reportAndExit(PROGRAM, err),
);
