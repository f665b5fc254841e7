/**
 * The device's side of pairing and of the owner's controls (issue 19): one request, one answer,
 * inside the end-to-end channel of a session to OWNER_SERVICE (the server sees ciphertext only).
 * Pairing needs a session made with the password; every other control needs a paired client's
 * session, so the label alone lists or revokes nothing once the owner changed the password.
 */
import { randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { isPeerlinkError } from '../common/errors.js';
import {
  CLIENT_ID_BYTES,
  deriveClientKey,
  MAX_PAIRINGS,
  OWNER_EXCHANGE_TIMEOUT_MS,
  OWNER_MESSAGE_MAX_BYTES,
  PAIR_EXPORTER_LABEL,
  parseOwnerRequest,
  readLine,
  type OwnerAnswer,
  type OwnerRequest,
} from '../protocol/pairing.js';
import { KEY_BYTES } from '../protocol/keys.js';
import type { Credential } from './credentials.js';
import { withRevoked, type OwnerState, type OwnerStore } from './owner-state.js';

export interface OwnerSessionContext {
  readonly credential: Credential;
  readonly store: OwnerStore;
  readonly equipmentId: string;
  /** The factory (label) access key, the password when the owner has set none. */
  readonly labelKey: Buffer;
  readonly logger: Logger;
  readonly now?: () => number;
}

class Refusal extends Error {
  constructor(
    readonly code: Extract<OwnerAnswer, { ok: false }>['code'],
    message: string,
  ) {
    super(message);
  }
}

export async function serveOwnerSession(tunnel: TLSSocket, ctx: OwnerSessionContext): Promise<void> {
  let answer: OwnerAnswer;
  let req: OwnerRequest | null = null;
  try {
    req = parseOwnerRequest(await readLine(tunnel, OWNER_MESSAGE_MAX_BYTES, OWNER_EXCHANGE_TIMEOUT_MS));
    answer = await handle(req, tunnel, ctx);
  } catch (err) {
    const code = err instanceof Refusal ? err.code : isPeerlinkError(err) ? 'bad-request' : 'internal';
    answer = { ok: false, code, message: (err as Error).message };
  }
  ctx.logger.info(
    {
      op: req?.op ?? null,
      ok: answer.ok,
      by: ctx.credential.kind === 'client' ? ctx.credential.id.slice(0, 8) : 'password',
      ...(answer.ok ? {} : { code: answer.code }),
    },
    'owner request',
  );
  await new Promise<void>((resolve) => {
    tunnel.end(`${JSON.stringify(answer)}\n`, () => resolve());
    tunnel.once('close', () => resolve());
  });
}

async function handle(req: OwnerRequest, tunnel: TLSSocket, ctx: OwnerSessionContext): Promise<OwnerAnswer> {
  const now = ctx.now ?? Date.now;
  const cred = ctx.credential;
  if (req.op === 'pair') {
    const clientId = randomBytes(CLIENT_ID_BYTES);
    const key = deriveClientKey(tunnel.exportKeyingMaterial(KEY_BYTES, PAIR_EXPORTER_LABEL, clientId), clientId, ctx.equipmentId);
    const id = clientId.toString('hex');
    await ctx.store.update((s) => {
      if (s.clients.length >= MAX_PAIRINGS)
        throw new Refusal('too-many', `the device keeps at most ${MAX_PAIRINGS} pairings; revoke one first`);
      return { ...s, clients: [...s.clients, { id, name: req.name, key, createdMs: now(), lastUsedMs: now() }] };
    });
    return { ok: true, clientId: id };
  }
  if (cred.kind !== 'client') throw new Refusal('not-paired', 'the owner controls need a paired client (pair first)');
  const self = cred.id;
  switch (req.op) {
    case 'clients': {
      const s = ctx.store.current();
      return {
        ok: true,
        clients: s.clients.map((c) => ({
          id: c.id,
          name: c.name,
          createdMs: c.createdMs,
          lastUsedMs: c.lastUsedMs,
          ...(c.id === self ? { self: true } : {}),
        })),
      };
    }
    case 'revoke':
      await ctx.store.update((s) => revokeClient(s, req.id));
      return { ok: true };
    case 'rename':
      await ctx.store.update((s) => {
        if (!s.clients.some((c) => c.id === req.id)) throw new Refusal('unknown-client', `no client ${req.id}`);
        return { ...s, clients: s.clients.map((c) => (c.id === req.id ? { ...c, name: req.name } : c)) };
      });
      return { ok: true };
    case 'set-password': {
      let dropped = 0;
      await ctx.store.update((s) => {
        const old = s.passwordKey ?? ctx.labelKey;
        const drop = req.keepPairings ? [] : s.clients.filter((c) => c.id !== self);
        dropped = drop.length;
        return {
          ...s,
          passwordKey: Buffer.from(req.accessKey, 'base64'),
          clients: s.clients.filter((c) => !drop.includes(c)),
          revokedKeys: withRevoked(s.revokedKeys, old, ...drop.map((c) => c.key)),
        };
      });
      return { ok: true, dropped };
    }
  }
}

/** Take one client's access away; its key is remembered so its next request is told why. */
export function revokeClient(s: OwnerState, id: string): OwnerState {
  const c = s.clients.find((x) => x.id === id || x.id.startsWith(id));
  if (!c || s.clients.filter((x) => x.id.startsWith(id)).length > 1) throw new Refusal('unknown-client', `no single client ${id}`);
  return { ...s, clients: s.clients.filter((x) => x !== c), revokedKeys: withRevoked(s.revokedKeys, c.key) };
}

/** Factory reset: the label password again, no pairings (their keys remembered as taken away). */
export function factoryReset(s: OwnerState): OwnerState {
  return {
    ...s,
    passwordKey: null,
    clients: [],
    revokedKeys: withRevoked(s.revokedKeys, ...(s.passwordKey ? [s.passwordKey] : []), ...s.clients.map((c) => c.key)),
  };
}
