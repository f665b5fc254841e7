/**
 * The client library's options (client.ts): what each means, their defaults, and their check at the
 * boundary (unknown keys rejected, every problem named at once), frozen.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.js';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { silentLogger } from '../common/logger.js';
import { rejectUnknownKeys, requireOption } from '../common/options.js';
import type { HostPort } from '../common/endpoint-parse.js';
import { DEVICE_ATTACH_TIMEOUT_MS, EQUIPMENT_ID_PATTERN, PEER_CONNECT_TIMEOUT_MS, SERVICE_NAME_PATTERN } from '../protocol/constants.js';
import { SERVER_KEEP_IDLE_MS } from './server-link.js';
import type { MappingMode } from '../nat/port-mapping.js';
import type { ProbePorts } from '../nat/client-mapping.js';

export interface ClientOptions {
  /** The rendezvous server's TLS endpoint. */
  readonly server: HostPort;
  /** Name expected in the server certificate; default: server.host. */
  readonly serverName?: string;
  /** PEM of the CA that signs the server's certificate. */
  readonly caPem: string;
  readonly equipmentId: string;
  /** The device's access secret as printed on its label... */
  readonly password?: string;
  /** ...or the access key derived from it (skips scrypt). */
  readonly accessKey?: Buffer;
  readonly service: string;
  /** Local address for the device's direct connection; default 0.0.0.0:0 (any free port). */
  readonly accept?: HostPort;
  /** The public port the device should dial (a static NAPT or UPnP mapping); default: the accept port. */
  readonly advertisePort?: number;
  /** Ask the router to forward the accept port (UPnP IGD v1/v2, NAT-PMP); default 'off'. */
  readonly mapPort?: MappingMode;
  readonly resultTimeoutMs?: number;
  readonly peerTimeoutMs?: number;
  /**
   * > 0 (default SESSION_IDLE_MS): open() makes one session with the device and opens a stream on
   * it per call (no server work while it lives), closing it after this long without a stream;
   * 0: a tunnel per open() (a TLSSocket: what needs the channel itself, e.g. its exporter).
   */
  readonly sessionIdleMs?: number;
  /** The server's UDP registration and probe ports: each request learns our NAT's mapping (nat/client-mapping.ts). */
  readonly probePorts?: ProbePorts;
  /**
   * The connection to the rendezvous server is kept this long after a request's answer (default
   * SERVER_KEEP_IDLE_MS), and the next request goes over it: no TLS handshake. 0: a connection per request.
   */
  readonly serverKeepMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

const OPTION_KEYS = [
  'server',
  'serverName',
  'caPem',
  'equipmentId',
  'password',
  'accessKey',
  'service',
  'accept',
  'advertisePort',
  'mapPort',
  'resultTimeoutMs',
  'peerTimeoutMs',
  'sessionIdleMs',
  'probePorts',
  'serverKeepMs',
  'clock',
  'logger',
] as const;

/** How long open()'s session is kept without a stream (the library's and `--listen`'s default). */
export const SESSION_IDLE_MS = 30_000;

export function validate(input: ClientOptions) {
  rejectUnknownKeys('client options', input, OPTION_KEYS);
  const problems: string[] = [];
  if (!EQUIPMENT_ID_PATTERN.test(input.equipmentId ?? ''))
    problems.push(`client options: equipmentId: expected 1-64 characters of A-Z a-z 0-9 . _ -, found ${JSON.stringify(input.equipmentId)}`);
  if (!SERVICE_NAME_PATTERN.test(input.service ?? ''))
    problems.push(`client options: service: expected a service name (a-z 0-9 . _ -), found ${JSON.stringify(input.service)}`);
  if (input.password === undefined && input.accessKey === undefined) problems.push('client options: password: required (or accessKey)');
  if (
    input.advertisePort !== undefined &&
    !(Number.isInteger(input.advertisePort) && input.advertisePort > 0 && input.advertisePort < 65536)
  ) {
    problems.push(`client options: advertisePort: expected 1-65535, found ${input.advertisePort}`);
  }
  if (input.sessionIdleMs !== undefined && !(Number.isInteger(input.sessionIdleMs) && input.sessionIdleMs >= 0)) {
    problems.push(`client options: sessionIdleMs: expected an integer >= 0 (0: no sessions), found ${input.sessionIdleMs}`);
  }
  if (input.serverKeepMs !== undefined && !(Number.isInteger(input.serverKeepMs) && input.serverKeepMs >= 0)) {
    problems.push(`client options: serverKeepMs: expected an integer >= 0 (0: a connection per request), found ${input.serverKeepMs}`);
  }
  if (problems.length) throw new ConfigError(problems, { code: ErrorCodes.OPTIONS_INVALID });
  return Object.freeze({
    server: requireOption('client options', 'server', input.server),
    serverName: input.serverName ?? input.server.host,
    caPem: requireOption('client options', 'caPem', input.caPem),
    equipmentId: input.equipmentId,
    password: input.password,
    accessKey: input.accessKey,
    service: input.service,
    accept: input.accept ?? { host: '::', port: 0 },
    advertisePort: input.advertisePort,
    mapPort: input.mapPort ?? 'off',
    resultTimeoutMs: input.resultTimeoutMs ?? DEVICE_ATTACH_TIMEOUT_MS * 2 + 2000,
    peerTimeoutMs: input.peerTimeoutMs ?? PEER_CONNECT_TIMEOUT_MS,
    sessionIdleMs: input.sessionIdleMs ?? SESSION_IDLE_MS,
    probePorts: input.probePorts,
    serverKeepMs: input.serverKeepMs ?? SERVER_KEEP_IDLE_MS,
    clock: input.clock ?? systemClock,
    logger: input.logger ?? silentLogger(),
  });
}
