/**
 * The agent's side of the owner's controls (issue 19), as createAgent (agent.ts) uses it: which
 * credential a wake proof was made with (the password, or one paired client's key), the sessions
 * in progress and their credential (ended when the owner takes that access away), each paired
 * client's last use, and the owner service inside a session's end-to-end channel.
 *
 * The owner state lives under state_dir (owner-state.ts), opened at start(). Before that, or when
 * no state directory can exist, only the label's key is accepted and pairing is off.
 */
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { deriveWakeKey, verifyWake, type Wake } from '../protocol/wake.js';
import { createCredentials, type Credential, type Credentials, type WakeMatch } from './credentials.js';
import { serveOwnerSession } from './owner-service.js';
import { openOwnerStore, type OwnerStore } from './owner-state.js';

/** A paired client's last use is written at most this often (each write is an fsync). */
export const LAST_USED_RESOLUTION_MS = 60_000;

export interface OwnerAccess {
  /** Open the owner state under `stateDir` (once; again after close()). */
  open(stateDir: string): void;
  close(): void;
  /** The wake proof's credential, `revoked`, or null (no key verifies it). */
  match(wake: Wake): WakeMatch;
  /** A session made with `credential`: its signal aborts when that access is taken away; call done() at its end. */
  track(credential: Credential): { readonly signal: AbortSignal; done(): void };
  /** An accepted request: remember the paired client's last use (coarsely). */
  touch(credential: Credential): void;
  /** What serves an OWNER_SERVICE session with this credential; undefined while the owner state is closed. */
  ownerSession(credential: Credential): ((tunnel: TLSSocket) => Promise<void>) | undefined;
  store(): OwnerStore | null;
}

export function createOwnerAccess(o: { readonly identity: DeviceIdentity; readonly clock: Clock; readonly logger: Logger }): OwnerAccess {
  const { identity, clock, logger } = o;
  const labelWakeKey = deriveWakeKey(identity.accessKey);
  let store: OwnerStore | null = null;
  let credentials: Credentials | null = null;
  /** Sessions in progress and the credential each was made with, to end them when it is taken away. */
  const running = new Map<AbortController, Credential>();
  const endRevoked = (): void => {
    for (const [ctl, c] of running) {
      if (credentials && !credentials.valid(c)) {
        logger.info({ client: c.kind === 'client' ? c.id.slice(0, 8) : 'password' }, 'access taken away: ending its session');
        ctl.abort();
      }
    }
  };
  return {
    open(stateDir) {
      if (store) return;
      try {
        store = openOwnerStore({ stateDir, logger });
        credentials = createCredentials(identity, store);
        store.watch(endRevoked);
      } catch (err) {
        // No state directory can exist there, so no owner state does: the label's password only,
        // and no pairing (a file that exists but cannot be read stops the agent instead: falling
        // back to the label would undo the owner's password change).
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTDIR' && code !== 'ENOENT') throw err;
        logger.error({ stateDir, err: (err as Error).message }, 'owner state unavailable: serving the label password only; pairing is off');
      }
    },
    close() {
      store?.stop();
      store = null;
      credentials = null;
    },
    match(wake) {
      if (credentials) return credentials.match(wake);
      return verifyWake(labelWakeKey, identity.equipmentId, wake) ? { credential: { kind: 'password', key: identity.accessKey } } : null;
    },
    track(credential) {
      const ctl = new AbortController();
      running.set(ctl, credential);
      return { signal: ctl.signal, done: () => void running.delete(ctl) };
    },
    touch(c) {
      if (c.kind !== 'client' || !store) return;
      const now = clock.now();
      const p = store.current().clients.find((x) => x.id === c.id);
      if (!p || now - p.lastUsedMs < LAST_USED_RESOLUTION_MS) return;
      store
        .update((s) => ({ ...s, clients: s.clients.map((x) => (x.id === c.id ? { ...x, lastUsedMs: now } : x)) }))
        .catch((err: Error) => logger.warn({ err: err.message }, "could not record the client's last use"));
    },
    ownerSession(credential) {
      const s = store;
      if (!s) return undefined;
      return (tunnel) =>
        serveOwnerSession(tunnel, { credential, store: s, equipmentId: identity.equipmentId, labelKey: identity.accessKey, logger });
    },
    store: () => store,
  };
}
