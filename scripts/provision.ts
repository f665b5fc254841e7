#!/usr/bin/env node
/**
 * peerlink-provision: the factory / operator tool that creates the CA, the rendezvous
 * server's certificate, the registration master key and device identities.
 *
 * Secrets go to files only (keys 0600, certificates 0644). The single exception is the
 * `device` command's label password, printed once on stdout as "password: ..." because
 * nothing on the device may keep it.
 *
 * Exit codes: 0 done, 1 failed, 2 usage error.
 */
import { realpathSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ErrorCodes, isPeerlinkError } from '../agent/common/errors.js';
import { fileExists, writeFileAtomic } from '../agent/common/files.js';
import { EQUIPMENT_ID_PATTERN } from '../agent/protocol/constants.js';
import { isGeneration, MAX_IDENTITY_GENERATION } from '../agent/protocol/identity-name.js';
import { CA_VALIDITY_DAYS, CERT_MAX_VALIDITY_DAYS, createCa } from '../agent/pki/ca.js';
import {
  SERVER_CERT_VALIDITY_DAYS,
  SERVER_KEY_TYPES,
  issueServerCert,
  normalizeServerHosts,
  type ServerKeyType,
} from '../agent/pki/server-cert.js';
import { createRegistrationMasterKey, formatMasterKey, loadMasterKey } from '../agent/pki/master-key.js';
import { createDeviceIdentity, writeDeviceIdentity } from '../agent/pki/device.js';
import { checkPasswordStrength } from '../agent/pki/password-strength.js';
import { ID_SCHEMES, type IdScheme, parseDeviceCsv, serialRange } from '../agent/pki/device-id.js';
import { progressBar, runBatch } from './provision/batch.js';
import { X509Certificate } from 'node:crypto';

const PROGRAM = 'peerlink-provision';
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const CERT_FILE_MODE = 0o644;
const SECRET_FILE_MODE = 0o600;
/** Directories we create hold private keys: owner only. Existing directories are left as they are. */
const CREATED_DIR_MODE = 0o700;

export const USAGE = `Usage: ${PROGRAM} <command> [options]

Commands:
  ca --out-dir DIR [--cn NAME] [--days N] [--force]
      Create the CA that signs the rendezvous server: DIR/ca.pem (0644), DIR/ca.key (0600).
      Refuses to replace an existing DIR/ca.key without --force. Default validity ${CA_VALIDITY_DAYS} days.

  server-cert --ca-dir DIR --host HOST [--host HOST ...] --out-dir DIR2 [--days N] [--key-type ec|rsa]
      Issue the rendezvous server's certificate for each HOST (DNS name or IP address):
      DIR2/server.pem (0644), DIR2/server.key (0600). Default validity ${SERVER_CERT_VALIDITY_DAYS} days.
      Key: ECDSA P-256 (ec, the default: a cheaper handshake) or RSA 2048 (rsa).

  master-key --out FILE [--force]
      Create the server's registration master key: FILE (0600). Refuses to replace FILE without --force.

  device --id ID --master-key FILE --ca-cert FILE --out FILE [--password-file F] [--generation G] [--force]
      Write a device identity: FILE (0600). --generation G (1-255) provisions the ID again with new keys
      after its identity leaked; the operator then denies the old one alone (peerlink-server deny add ID@g,
      the first generation is ID@0). Prints the label password on stdout as
      "password: XXXX-XXXX-XXXX-XXXX-XXXX", or, with --password-file, uses the first line of F
      and prints nothing; a chosen password needs at least 12 characters and about 64 bits
      (e.g. 14 random letters and digits), or it is refused. Refuses to replace FILE without --force.

  batch --master-key FILE --ca-cert FILE --out-dir DIR (--csv FILE | --range START-END [--digits N])
        [--id-scheme serial|mac] [--prefix P] [--server HOST:PORT] [--product NAME] [--rotate] [--jobs N]
      Provision many devices: DIR/<ID>/identity.toml (0600, for the device) and DIR/<ID>/label.svg
      (0600 until printed: it shows the password and a QR code of peerlink://connect?...).
      The CSV has a header row with a "serial" column and, for --id-scheme mac, a "mac" column.
      IDs are P + serial, or P + the MAC's 12 hex digits. Re-runs keep existing devices unless
      --rotate (new password and keys). Each device is written whole or not at all.
      DIR/manifest.csv lists what each run created. The server needs nothing new: the
      registration master key is its one artefact for every device.

  renew-server-cert --ca-dir DIR --dir DIR2 [--days N] [--key-type ec|rsa]
      Re-issue DIR2/server.pem for the same names with a fresh key (DIR2/server.key), ECDSA P-256
      unless --key-type rsa.

Options:
  -h, --help  Show this help.

Exit status: 0 done, 1 failed, 2 usage error.
`;

export interface ProvisionIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

const processIo: ProvisionIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Bad command line: exit 2 and a hint to --help. */
class UsageError extends Error {
  override name = 'UsageError';
}

/** A refusal or failure that is not a usage error: exit 1. */
class ProvisionError extends Error {
  override name = 'ProvisionError';
}

type Values = Record<string, string | boolean | string[] | undefined>;

function required(values: Values, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

function optionalString(values: Values, name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} needs a value`);
  return v;
}

function keyType(values: Values): ServerKeyType | undefined {
  const v = optionalString(values, 'key-type');
  if (v === undefined) return undefined;
  if (!(SERVER_KEY_TYPES as readonly string[]).includes(v))
    throw new UsageError(`--key-type must be one of ${SERVER_KEY_TYPES.join(', ')}, found ${JSON.stringify(v)}`);
  return v as ServerKeyType;
}

function days(values: Values): number | undefined {
  const v = optionalString(values, 'days');
  if (v === undefined) return undefined;
  const n = /^[1-9][0-9]*$/.test(v) ? Number(v) : NaN;
  if (!(n <= CERT_MAX_VALIDITY_DAYS))
    throw new UsageError(`--days must be an integer from 1 to ${CERT_MAX_VALIDITY_DAYS}, found ${JSON.stringify(v)}`);
  return n;
}

async function refuseOverwrite(path: string, force: boolean, consequence: string): Promise<void> {
  if (!force && (await fileExists(path))) {
    throw new ProvisionError(`${path} already exists; use --force to replace it (${consequence})`);
  }
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ProvisionError(`${path}: cannot read ${what}: ${(err as Error).message}`);
  }
}

async function cmdCa(args: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      'out-dir': { type: 'string' },
      cn: { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  const outDir = required(values, 'out-dir');
  const commonName = optionalString(values, 'cn');
  const validityDays = days(values);
  const keyPath = join(outDir, 'ca.key');
  await refuseOverwrite(keyPath, values.force === true, 'everything issued by the old CA would stop being trusted');

  const ca = createCa({ commonName, validityDays });
  await mkdir(outDir, { recursive: true, mode: CREATED_DIR_MODE });
  // Certificate first: a failure in between leaves no ca.key, so a rerun is not refused.
  await writeFileAtomic(join(outDir, 'ca.pem'), ca.certPem, CERT_FILE_MODE);
  await writeFileAtomic(keyPath, ca.keyPem, SECRET_FILE_MODE);
}

async function cmdServerCert(args: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      'ca-dir': { type: 'string' },
      host: { type: 'string', multiple: true },
      'out-dir': { type: 'string' },
      days: { type: 'string' },
      'key-type': { type: 'string' },
    },
  });
  const caDir = required(values, 'ca-dir');
  const outDir = required(values, 'out-dir');
  if (values.host === undefined || values.host.length === 0) throw new UsageError('--host is required (repeat it for each name)');
  let hosts: string[];
  try {
    hosts = normalizeServerHosts(values.host);
  } catch (err) {
    if (isPeerlinkError(err, ErrorCodes.OPTIONS_INVALID)) throw new UsageError(`--host: ${err.message.replace(/^issueServerCert: /, '')}`);
    throw err;
  }
  const validityDays = days(values);
  const type = keyType(values);

  const caCertPem = await readText(join(caDir, 'ca.pem'), 'the CA certificate');
  const caKeyPem = await readText(join(caDir, 'ca.key'), 'the CA key');
  const server = issueServerCert({ caCertPem, caKeyPem, hosts, validityDays, ...(type ? { keyType: type } : {}) });
  await mkdir(outDir, { recursive: true, mode: CREATED_DIR_MODE });
  // Two atomic writes, not one: a crash between them can leave a new key beside the old
  // certificate (Node refuses such a pair: "key values mismatch"); rerun to fix.
  await writeFileAtomic(join(outDir, 'server.key'), server.keyPem, SECRET_FILE_MODE);
  await writeFileAtomic(join(outDir, 'server.pem'), server.certPem, CERT_FILE_MODE);
}

async function cmdMasterKey(args: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  const out = required(values, 'out');
  await refuseOverwrite(out, values.force === true, 'every provisioned device would fail to register');
  await writeFileAtomic(out, formatMasterKey(createRegistrationMasterKey()), SECRET_FILE_MODE);
}

async function cmdDevice(args: readonly string[], io: ProvisionIo): Promise<void> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      id: { type: 'string' },
      'master-key': { type: 'string' },
      'ca-cert': { type: 'string' },
      out: { type: 'string' },
      'password-file': { type: 'string' },
      generation: { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  const equipmentId = required(values, 'id');
  const generation = values.generation === undefined ? 0 : Number(values.generation);
  if (!/^[1-9]\d{0,2}$/.test(values.generation ?? '1') || !isGeneration(generation)) {
    throw new UsageError(`--generation must be an integer 1-${MAX_IDENTITY_GENERATION}, found ${JSON.stringify(values.generation)}`);
  }
  if (!EQUIPMENT_ID_PATTERN.test(equipmentId)) {
    throw new UsageError(`--id must be 1-64 characters of A-Z a-z 0-9 . _ -, found ${JSON.stringify(equipmentId)}`);
  }
  const masterKeyFile = required(values, 'master-key');
  const caCertFile = required(values, 'ca-cert');
  const out = required(values, 'out');
  const passwordFile = optionalString(values, 'password-file');
  await refuseOverwrite(out, values.force === true, 'the device would lose its current identity and label password');

  const masterKey = await loadMasterKey(masterKeyFile);
  const caCertPem = await readText(caCertFile, 'the CA certificate');
  let password: string | undefined;
  if (passwordFile !== undefined) {
    password = (await readText(passwordFile, 'the password')).split(/\r?\n/, 1)[0]?.trim() ?? '';
    if (password === '') throw new ProvisionError(`${passwordFile}: the first line is empty; expected the device password`);
    checkPasswordStrength(password, passwordFile);
  }
  const device = await createDeviceIdentity({ equipmentId, masterKey, caCertPem, password, ...(generation ? { generation } : {}) });
  await writeDeviceIdentity(out, device.identity);
  if (passwordFile === undefined) io.stdout(`password: ${device.password}\n`);
}

function readCaCertOnly(pem: string, file: string): string {
  // The CA key stays on the provisioning station: refuse a file that carries it.
  if (/PRIVATE KEY-----/.test(pem))
    throw new ProvisionError(
      `${file}: contains a private key; pass the CA certificate alone (the CA key never goes into a device identity)`,
    );
  return pem;
}

async function cmdBatch(args: readonly string[], io: ProvisionIo): Promise<boolean> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      'master-key': { type: 'string' },
      'ca-cert': { type: 'string' },
      'out-dir': { type: 'string' },
      csv: { type: 'string' },
      range: { type: 'string' },
      digits: { type: 'string' },
      'id-scheme': { type: 'string' },
      prefix: { type: 'string' },
      server: { type: 'string' },
      product: { type: 'string' },
      rotate: { type: 'boolean', default: false },
      jobs: { type: 'string' },
    },
  });
  const outDir = required(values, 'out-dir');
  const masterKeyFile = required(values, 'master-key');
  const caCertFile = required(values, 'ca-cert');
  const csv = optionalString(values, 'csv');
  const range = optionalString(values, 'range');
  if ((csv === undefined) === (range === undefined)) throw new UsageError('give exactly one of --csv FILE or --range START-END');
  const scheme = (optionalString(values, 'id-scheme') ?? 'serial') as IdScheme;
  if (!ID_SCHEMES.includes(scheme))
    throw new UsageError(`--id-scheme must be one of ${ID_SCHEMES.join(', ')}, found ${JSON.stringify(scheme)}`);
  if (range !== undefined && scheme === 'mac') throw new UsageError('--id-scheme mac needs --csv with a mac column');
  const intOpt = (name: string, min: number, max: number): number | undefined => {
    const v = optionalString(values, name);
    if (v === undefined) return undefined;
    const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
    if (!(n >= min && n <= max)) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, found ${JSON.stringify(v)}`);
    return n;
  };
  const digits = intOpt('digits', 1, 15);
  const jobs = intOpt('jobs', 0, 256);
  const server = optionalString(values, 'server');
  if (server !== undefined && !/^[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$/.test(server))
    throw new UsageError(`--server must be HOST:PORT, found ${JSON.stringify(server)}`);
  let records;
  try {
    records = csv !== undefined ? parseDeviceCsv(await readText(csv, 'the device list'), csv) : serialRange(range!, digits);
  } catch (err) {
    if (isPeerlinkError(err, ErrorCodes.OPTIONS_INVALID)) throw new UsageError(err.message);
    throw err;
  }
  const list =
    Array.isArray(records) && typeof records[0] === 'string'
      ? (records as string[]).map((serial) => ({ serial }))
      : (records as { serial: string; mac?: string }[]);
  const masterKey = await loadMasterKey(masterKeyFile);
  const caCertPem = readCaCertOnly(await readText(caCertFile, 'the CA certificate'), caCertFile);
  const t0 = performance.now();
  const tty = (process.stderr as { isTTY?: boolean }).isTTY === true && io === processIo;
  let lastDraw = 0;
  let lastDecile = -1;
  let summary;
  try {
    summary = await runBatch({
      outDir,
      masterKey,
      caCertPem,
      rotate: values.rotate === true,
      records: list,
      scheme,
      prefix: optionalString(values, 'prefix') ?? '',
      ...(server ? { server } : {}),
      ...(values.product ? { productName: String(values.product) } : {}),
      ...(jobs !== undefined ? { jobs } : {}),
      onProgress(done, total) {
        const now = performance.now();
        if (tty) {
          if (now - lastDraw > 100 || done === total) {
            lastDraw = now;
            io.stderr(`\r${progressBar(done, total, now - t0)}`);
            if (done === total) io.stderr('\n');
          }
        } else {
          const decile = Math.floor((done / total) * 10);
          if (decile !== lastDecile) {
            lastDecile = decile;
            io.stderr(`${progressBar(done, total, now - t0)}\n`);
          }
        }
      },
    });
  } catch (err) {
    if (isPeerlinkError(err, ErrorCodes.OPTIONS_INVALID)) throw new UsageError(err.message);
    throw err;
  }
  const secs = summary.elapsedMs / 1000;
  io.stdout(
    `batch: ${summary.total} devices in ${secs.toFixed(1)} s (${(summary.total / secs).toFixed(0)}/s): ` +
      `${summary.created} created, ${summary.rotated} rotated, ${summary.kept} kept (already provisioned), ${summary.failed.length} failed\n` +
      `devices: ${outDir}/<ID>/identity.toml (to the device), ${outDir}/<ID>/label.svg (to the printer)\n` +
      `server: nothing new; ${masterKeyFile} (the registration master key) authenticates every device\n`,
  );
  for (const f of summary.failed.slice(0, 20)) io.stderr(`${PROGRAM}: ${f.equipmentId} (serial ${f.serial}): ${f.error}\n`);
  if (summary.failed.length > 20) io.stderr(`${PROGRAM}: ... and ${summary.failed.length - 20} more failures\n`);
  return summary.failed.length === 0;
}

async function cmdRenewServerCert(args: readonly string[], io: ProvisionIo): Promise<void> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: { 'ca-dir': { type: 'string' }, dir: { type: 'string' }, days: { type: 'string' }, 'key-type': { type: 'string' } },
  });
  const caDir = required(values, 'ca-dir');
  const dir = required(values, 'dir');
  const validityDays = days(values);
  const type = keyType(values);
  const certFile = join(dir, 'server.pem');
  let old: X509Certificate;
  try {
    old = new X509Certificate(await readText(certFile, 'the current server certificate'));
  } catch (err) {
    if (err instanceof ProvisionError) throw err;
    throw new ProvisionError(`${certFile}: not a readable PEM certificate (${(err as Error).message})`);
  }
  // "DNS:a.example, IP Address:1.2.3.4": the same names go into the new certificate.
  const hosts = (old.subjectAltName ?? '')
    .split(/,\s*/)
    .map((e) => /^(?:DNS|IP Address):(.+)$/.exec(e.trim())?.[1])
    .filter((h): h is string => h !== undefined);
  if (hosts.length === 0) throw new ProvisionError(`${certFile}: has no DNS or IP subjectAltName to renew; use server-cert --host`);
  const caCertPem = await readText(join(caDir, 'ca.pem'), 'the CA certificate');
  const caKeyPem = await readText(join(caDir, 'ca.key'), 'the CA key');
  const server = issueServerCert({ caCertPem, caKeyPem, hosts, validityDays, ...(type ? { keyType: type } : {}) });
  await writeFileAtomic(join(dir, 'server.key'), server.keyPem, SECRET_FILE_MODE);
  await writeFileAtomic(certFile, server.certPem, CERT_FILE_MODE);
  io.stdout(
    `renewed ${certFile} for ${hosts.join(', ')}: was valid to ${old.validTo}, now to ${new X509Certificate(server.certPem).validTo}\n`,
  );
}

/** Run the CLI with `argv` (without node and script); resolves to the exit status. */
export async function main(argv: readonly string[], io: ProvisionIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined) throw new UsageError('a command is required');
    if (argv.includes('--help') || argv.includes('-h') || command === 'help') {
      io.stdout(USAGE);
      return EXIT_OK;
    }
    switch (command) {
      case 'ca':
        await cmdCa(rest);
        break;
      case 'server-cert':
        await cmdServerCert(rest);
        break;
      case 'master-key':
        await cmdMasterKey(rest);
        break;
      case 'device':
        await cmdDevice(rest, io);
        break;
      case 'batch':
        if (!(await cmdBatch(rest, io))) return EXIT_FAILURE;
        break;
      case 'renew-server-cert':
        await cmdRenewServerCert(rest, io);
        break;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
    return EXIT_OK;
  } catch (err) {
    // parseArgs reports bad options as TypeErrors with ERR_PARSE_ARGS_* codes.
    const code = (err as { code?: unknown }).code;
    const usage = err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'));
    const message = err instanceof Error ? err.message : String(err);
    for (const line of message.split('\n')) io.stderr(`${PROGRAM}: ${line}\n`);
    if (usage) io.stderr(`${PROGRAM}: run '${PROGRAM} --help' for usage\n`);
    return usage ? EXIT_USAGE : EXIT_FAILURE;
  }
}

/** True when this file is the program being run, also through an npm bin symlink. */
function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(`${PROGRAM}: internal error: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = EXIT_FAILURE;
    },
  );
}
