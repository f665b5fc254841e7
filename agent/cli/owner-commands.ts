/**
 * `peerlink pair` and `peerlink device clients|revoke|rename|set-password` (issue 19): pairing and
 * the owner's controls, from a client. Each is one end-to-end session to the device's owner
 * service (agent/client/owner-client.ts); the server relays ciphertext only.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { readSecretFile } from '../common/secret-file.js';
import { parseHostPort } from '../common/endpoint-parse.js';
import { createLogger } from '../common/logger.js';
import { CONNECT_URI_SCHEME, parseConnectUri } from '../protocol/connect-uri.js';
import { ownerRequest, pair, setPassword, type OwnerClientOptions } from '../client/owner-client.js';
import { defaultPairingDir, loadPairing, savePairing } from '../client/pairings.js';
import type { ClientInfo } from '../protocol/pairing.js';

export const OWNER_USAGE = `       peerlink pair <equipment-id | peerlink://connect?...> --name NAME --server HOST:PORT --ca CA.pem [--password-file FILE]
       peerlink device clients <equipment-id> --server HOST:PORT --ca CA.pem [--json]
       peerlink device revoke <equipment-id> <client ID (8+ hex digits) | name> --server HOST:PORT --ca CA.pem
       peerlink device rename <equipment-id> <client ID | name> --name NAME --server HOST:PORT --ca CA.pem
       peerlink device set-password <equipment-id> --new-password-file FILE (--keep-pairings | --drop-pairings) --server HOST:PORT --ca CA.pem
                [--pairing-dir DIR] [--server-name NAME] [--log-level LEVEL]   (pair and device commands)

  pair              pair this client with the device using its label password (or the password the owner set);
                    the per-client key is stored in --pairing-dir (default ${defaultPairingDir({ HOME: '~' })}), mode 0600,
                    and later connect/device commands use it instead of the password
  device clients    list the clients paired with the device, their names and last use
  device revoke     take one client's access away: its next request is refused (exit 25), its sessions end
  device rename     rename a paired client
  device set-password  change the password; --keep-pairings keeps every pairing, --drop-pairings drops all but this one`;

export type OwnerValues = Record<string, string | boolean | undefined>;

function usage(message: string): ConfigError {
  return new ConfigError([`${message}\n${OWNER_USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });
}

const str = (v: OwnerValues, k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);

async function common(
  v: OwnerValues,
  equipmentId: string,
  uriServer?: string,
): Promise<Omit<OwnerClientOptions, 'password' | 'accessKey'>> {
  const server = str(v, 'server') ?? uriServer;
  if (!server) throw usage('--server is required');
  const ca = str(v, 'ca');
  if (!ca) throw usage('--ca is required');
  let caPem: string;
  try {
    caPem = await readFile(ca, 'utf8');
  } catch (err) {
    throw new ConfigError([`--ca ${ca}: ${(err as Error).message}`]);
  }
  const serverName = str(v, 'server-name');
  return {
    server: parseHostPort(server, '--server'),
    caPem,
    equipmentId,
    ...(serverName ? { serverName } : {}),
    logger: createLogger({ name: 'peerlink', level: str(v, 'log-level') ?? 'warn', destination: 2 }),
  };
}

async function firstLine(file: string, what: string, flag: string): Promise<string> {
  const line = (await readSecretFile(file, { what, label: `${flag} ${file}` })).split('\n')[0]!.trim();
  if (!line) throw new ConfigError([`${flag} ${file}: the first line is empty`]);
  return line;
}

function describe(c: ClientInfo): string {
  const when = (ms: number): string => (ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : 'never');
  return `${c.id}  ${c.name.padEnd(24)}  paired ${when(c.createdMs)}  last used ${when(c.lastUsedMs)}${c.self ? '  (this client)' : ''}`;
}

export async function ownerCommand(
  positionals: readonly string[],
  v: OwnerValues,
  out: NodeJS.WritableStream = process.stdout,
): Promise<void> {
  const dir = str(v, 'pairing-dir') ?? defaultPairingDir();
  const [command, ...args] = positionals;
  if (command === 'pair') return pairMain(args, v, dir, out);
  if (command === 'device') return deviceMain(args, v, dir, out);
  throw usage(`unknown command ${JSON.stringify(command)}`);
}

/** pair: one session with the password; the per-client key goes to the pairing directory. */
async function pairMain(args: readonly string[], v: OwnerValues, dir: string, out: NodeJS.WritableStream): Promise<void> {
  const [target, ...extra] = args;
  if (!target || extra.length) throw usage('expected: pair <equipment-id | peerlink://connect?...>');
  const uri = target.startsWith(CONNECT_URI_SCHEME) ? parseConnectUri(target) : null;
  const equipmentId = uri?.equipmentId ?? target;
  const name = str(v, 'name');
  if (!name) throw usage('--name is required (what the owner will see this client as)');
  const passwordFile = str(v, 'password-file');
  if (!uri && !passwordFile) throw usage("--password-file is required (or give the label's peerlink:// URI)");
  const password = passwordFile ? await firstLine(passwordFile, 'the device password', '--password-file') : uri!.password;
  const o = await common(v, equipmentId, uri?.server);
  const p = await pair({ ...o, password }, name);
  const file = await savePairing(dir, p);
  out.write(`paired with ${equipmentId} as "${name}" (client ${p.clientId}); key stored in ${file}\n`);
}

/** What each `device` subcommand gets: the paired session's options, its arguments, and how to name a client. */
interface DeviceContext {
  readonly o: OwnerClientOptions;
  readonly v: OwnerValues;
  readonly rest: readonly string[];
  readonly out: NodeJS.WritableStream;
  /** A client's full ID from its name or an ID prefix, exactly one match. */
  readonly resolve: (who: string | undefined) => Promise<string>;
}

const DEVICE_COMMANDS: Readonly<Record<string, (c: DeviceContext) => Promise<void>>> = {
  clients: deviceClients,
  revoke: deviceRevoke,
  rename: deviceRename,
  'set-password': deviceSetPassword,
};

/** device clients|revoke|rename|set-password <equipment-id>: through this client's stored pairing. */
async function deviceMain(args: readonly string[], v: OwnerValues, dir: string, out: NodeJS.WritableStream): Promise<void> {
  const [sub, equipmentId, ...rest] = args;
  if (!sub || !equipmentId) throw usage('expected: device clients|revoke|rename|set-password <equipment-id> ...');
  const run = Object.hasOwn(DEVICE_COMMANDS, sub) ? DEVICE_COMMANDS[sub] : undefined;
  if (!run) throw usage(`unknown device command ${JSON.stringify(sub)}`);
  const pairing = await loadPairing(dir, equipmentId);
  if (!pairing) throw usage(`no pairing with ${equipmentId} in ${dir}: run peerlink pair first`);
  const o = { ...(await common(v, equipmentId)), accessKey: pairing.key };
  const resolve = async (who: string | undefined): Promise<string> => {
    if (!who) throw usage(`device ${sub}: name the client (its ID, 8 or more hex digits, or its name)`);
    const { clients = [] } = await ownerRequest(o, { op: 'clients' });
    const hits = clients.filter((c) => c.name === who || (/^[0-9a-f]{8,32}$/.test(who) && c.id.startsWith(who)));
    if (hits.length !== 1) throw usage(`device ${sub}: ${hits.length ? 'more than one' : 'no'} client matches ${JSON.stringify(who)}`);
    return hits[0]!.id;
  };
  await run({ o, v, rest, out, resolve });
}

async function deviceClients({ o, v, rest, out }: DeviceContext): Promise<void> {
  if (rest.length) throw usage('device clients takes no further arguments');
  const { clients = [] } = await ownerRequest(o, { op: 'clients' });
  out.write(v.json ? `${JSON.stringify(clients)}\n` : clients.map(describe).join('\n') + (clients.length ? '\n' : 'no paired clients\n'));
}

async function deviceRevoke({ o, rest, out, resolve }: DeviceContext): Promise<void> {
  if (rest.length !== 1) throw usage('expected: device revoke <equipment-id> <client>');
  const id = await resolve(rest[0]);
  await ownerRequest(o, { op: 'revoke', id });
  out.write(`revoked client ${id}\n`);
}

async function deviceRename({ o, v, rest, out, resolve }: DeviceContext): Promise<void> {
  if (rest.length !== 1) throw usage('expected: device rename <equipment-id> <client> --name NAME');
  const name = str(v, 'name');
  if (!name) throw usage('--name is required');
  const id = await resolve(rest[0]);
  await ownerRequest(o, { op: 'rename', id, name });
  out.write(`client ${id} is now "${name}"\n`);
}

async function deviceSetPassword({ o, v, rest, out }: DeviceContext): Promise<void> {
  if (rest.length) throw usage('device set-password takes no further arguments');
  const file = str(v, 'new-password-file');
  if (!file) throw usage('--new-password-file is required');
  if (Boolean(v['keep-pairings']) === Boolean(v['drop-pairings'])) throw usage('give exactly one of --keep-pairings or --drop-pairings');
  const dropped = await setPassword(o, await firstLine(file, 'the new password', '--new-password-file'), Boolean(v['keep-pairings']));
  out.write(`password changed; ${dropped} pairing(s) dropped\n`);
}
