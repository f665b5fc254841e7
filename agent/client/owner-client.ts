/**
 * The client's side of pairing and of the owner's controls (issue 19), for the CLI and the library:
 *
 *   const pairing = await pair({ server, caPem, equipmentId, password }, 'Anna\'s phone');
 *   await ownerRequest({ server, caPem, equipmentId, accessKey: pairing.key }, { op: 'clients' });
 *
 * Each is one session to OWNER_SERVICE through the usual paths (request, wake, TLS-PSK channel);
 * the message and the key derivation happen inside the end-to-end channel, so the server sees
 * neither (P2).
 */
import { TLSSocket } from 'node:tls';
import { createClient, type ClientOptions } from './client.js';
import { ErrorCodes, PeerlinkError, ProtocolError } from '../common/errors.js';
import { deriveAccessKey, KEY_BYTES } from '../protocol/keys.js';
import { checkPasswordStrength } from '../pki/password-strength.js';
import {
  checkClientName,
  deriveClientKey,
  OWNER_EXCHANGE_TIMEOUT_MS,
  OWNER_MESSAGE_MAX_BYTES,
  OWNER_SERVICE,
  PAIR_EXPORTER_LABEL,
  readLine,
  type OwnerAnswer,
  type OwnerRequest,
} from '../protocol/pairing.js';
import type { Pairing } from './pairings.js';

export type OwnerClientOptions = Omit<ClientOptions, 'service'>;

async function exchange<T>(
  options: OwnerClientOptions,
  request: OwnerRequest,
  after: (a: Extract<OwnerAnswer, { ok: true }>, s: TLSSocket) => T,
  signal?: AbortSignal,
): Promise<T> {
  // No session (sessionIdleMs 0): the pairing key comes from the end-to-end TLS channel's exporter.
  const client = createClient({ ...options, service: OWNER_SERVICE, sessionIdleMs: 0 });
  try {
    const { stream } = await client.open(signal);
    if (!(stream instanceof TLSSocket))
      throw new PeerlinkError(ErrorCodes.INTERNAL, 'owner controls need the end-to-end TLS channel, not a session stream');
    try {
      stream.write(`${JSON.stringify(request)}\n`);
      const line = await readLine(stream, OWNER_MESSAGE_MAX_BYTES, OWNER_EXCHANGE_TIMEOUT_MS);
      let answer: OwnerAnswer;
      try {
        answer = JSON.parse(line) as OwnerAnswer;
      } catch {
        throw new ProtocolError('owner.answer', 'not JSON');
      }
      if (typeof answer !== 'object' || answer === null || typeof answer.ok !== 'boolean')
        throw new ProtocolError('owner.answer', 'not an answer');
      if (!answer.ok)
        throw new PeerlinkError(ErrorCodes.OWNER_REFUSED, `the device refused (${String(answer.code)}): ${String(answer.message)}`);
      return after(answer, stream);
    } finally {
      stream.end();
      stream.destroy();
    }
  } finally {
    await client.stop();
  }
}

/** Pair with the password (or its access key): both ends derive the client's key from this session. */
export function pair(options: OwnerClientOptions, name: string, signal?: AbortSignal): Promise<Pairing> {
  checkClientName(name, 'pairing name');
  return exchange(
    options,
    { op: 'pair', name },
    (a, stream) => {
      if (typeof a.clientId !== 'string' || !/^[0-9a-f]{32}$/.test(a.clientId))
        throw new ProtocolError('owner.clientId', 'expected 32 hex digits');
      const clientId = Buffer.from(a.clientId, 'hex');
      const key = deriveClientKey(stream.exportKeyingMaterial(KEY_BYTES, PAIR_EXPORTER_LABEL, clientId), clientId, options.equipmentId);
      return { equipmentId: options.equipmentId, clientId: a.clientId, name, key };
    },
    signal,
  );
}

/** One owner control from a paired client (options.accessKey = the pairing's key). */
export function ownerRequest(
  options: OwnerClientOptions,
  request: Exclude<OwnerRequest, { op: 'pair' }>,
  signal?: AbortSignal,
): Promise<Extract<OwnerAnswer, { ok: true }>> {
  return exchange(options, request, (a) => a, signal);
}

/**
 * Change the password: the new one is checked for strength (P11) and turned into its access key
 * here; only the key travels, inside the channel, so the device never learns the password either.
 */
export async function setPassword(
  options: OwnerClientOptions,
  newPassword: string,
  keepPairings: boolean,
  signal?: AbortSignal,
): Promise<number> {
  checkPasswordStrength(newPassword, 'the new password');
  const accessKey = await deriveAccessKey(newPassword, options.equipmentId, signal);
  const a = await ownerRequest(options, { op: 'set-password', accessKey: accessKey.toString('base64'), keepPairings }, signal);
  return a.dropped ?? 0;
}
