/**
 * Which secret a request was made with (issue 19): the current password's access key (the
 * label's, or the one the owner set), or the key of one paired client. The wake proof carries no
 * client ID, so the server and anyone on the path cannot tell which of the owner's phones is
 * connecting; the device tries each key, one HMAC each (at most 1 + MAX_PAIRINGS, then the
 * MAX_REVOKED_KEYS keys taken away, so that a revoked client is told so rather than "wrong password").
 */
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { deriveWakeKey, verifyWake, type Wake } from '../protocol/wake.js';
import type { OwnerState, OwnerStore } from './owner-state.js';

export type Credential =
  | { readonly kind: 'password'; readonly key: Buffer }
  | { readonly kind: 'client'; readonly id: string; readonly name: string; readonly key: Buffer };

export type WakeMatch = { readonly credential: Credential } | { readonly revoked: true } | null;

export interface Credentials {
  match(wake: Wake): WakeMatch;
  /** Is the credential still valid now (not revoked, password not changed)? */
  valid(c: Credential): boolean;
}

export function createCredentials(identity: DeviceIdentity, store: OwnerStore): Credentials {
  let cachedSerial = -1;
  let cachedState: OwnerState | null = null;
  let table: { wakeKey: Buffer; credential: Credential }[] = [];
  let revoked: Buffer[] = [];
  function refresh(): OwnerState {
    const s = store.current();
    if (s !== cachedState || s.serial !== cachedSerial) {
      cachedState = s;
      cachedSerial = s.serial;
      const password = s.passwordKey ?? identity.accessKey;
      table = [
        { wakeKey: deriveWakeKey(password), credential: { kind: 'password', key: password } },
        ...s.clients.map((c) => ({
          wakeKey: deriveWakeKey(c.key),
          credential: { kind: 'client' as const, id: c.id, name: c.name, key: c.key },
        })),
      ];
      revoked = s.revokedKeys.map((k) => deriveWakeKey(k));
    }
    return s;
  }
  return {
    match(wake) {
      refresh();
      for (const t of table) if (verifyWake(t.wakeKey, identity.equipmentId, wake)) return { credential: t.credential };
      for (const k of revoked) if (verifyWake(k, identity.equipmentId, wake)) return { revoked: true };
      return null;
    },
    valid(c) {
      const s = refresh();
      if (c.kind === 'password') return (s.passwordKey ?? identity.accessKey).equals(c.key);
      return s.clients.some((p) => p.id === c.id && p.key.equals(c.key));
    },
  };
}
