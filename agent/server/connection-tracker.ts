/**
 * The TLS listener's open connections, each with what it is known to be so far: in the TLS
 * handshake, secure but not identified (no first frame yet), a client's request, a device's
 * attach, a side of a relay session. It caps the connections nobody has identified yet (a
 * stranger opens those by the thousand for the price of a SYN), and at shutdown it lists what is
 * left by kind and destroys it, so that closing the listener never waits on a peer.
 */
import type { Socket } from 'node:net';
import { CLOSE_AFTER_END_MS, endThenDestroy } from '../common/listen.js';
import { rejectUnknownKeys } from '../common/options.js';

export const CONNECTION_KINDS = ['handshake', 'unidentified', 'client', 'device', 'relay'] as const;
export type ConnectionKind = (typeof CONNECTION_KINDS)[number];
export type IdentifiedKind = Exclude<ConnectionKind, 'handshake' | 'unidentified'>;

/** Default cap on connections in the handshake or before their first frame, together. */
export const MAX_UNIDENTIFIED_CONNECTIONS = 1_000;

export interface ConnectionTrackerOptions {
  readonly maxUnidentified?: number;
  readonly closeAfterEndMs?: number;
}

export interface ConnectionTracker {
  /** A new TCP connection, before TLS. Over the cap it is destroyed at once and false returned. */
  accepted(raw: Socket): boolean;
  /** Its TLS handshake completed (or it opened as a plain relay leg): not identified yet. */
  secured(socket: Socket): void;
  /** Its first frame said what it is. */
  identified(socket: Socket, kind: IdentifiedKind): void;
  kindOf(socket: Socket): ConnectionKind | undefined;
  /** Open connections by kind (handshake: accepted, not secure yet). */
  counts(): Record<ConnectionKind, number>;
  /** Open TCP connections, whatever their kind. */
  readonly size: number;
  /** Open connections past their TLS handshake. */
  readonly secureSize: number;
  /** FIN every secure connection (their last frames still go out), then destroy after the bound. */
  endAll(): void;
  destroyAll(): void;
}

export function createConnectionTracker(input: ConnectionTrackerOptions = {}): ConnectionTracker {
  rejectUnknownKeys('connection tracker options', input, ['maxUnidentified', 'closeAfterEndMs']);
  const o = Object.freeze({
    maxUnidentified: input.maxUnidentified ?? MAX_UNIDENTIFIED_CONNECTIONS,
    closeAfterEndMs: input.closeAfterEndMs ?? CLOSE_AFTER_END_MS,
  });
  const raw = new Set<Socket>();
  const secure = new Map<Socket, ConnectionKind>();
  // Kept as a count (not a scan of `secure`): `accepted` runs for every SYN of a flood.
  let identifiedOpen = 0;

  return {
    accepted(s) {
      if (raw.size - identifiedOpen >= o.maxUnidentified) {
        s.destroy();
        return false;
      }
      raw.add(s);
      s.once('close', () => raw.delete(s));
      return true;
    },
    secured(s) {
      secure.set(s, 'unidentified');
      s.once('close', () => {
        const kind = secure.get(s);
        secure.delete(s);
        if (kind !== 'unidentified' && kind !== undefined) identifiedOpen--;
      });
    },
    identified(s, kind) {
      const was = secure.get(s);
      if (was === undefined || s.destroyed) return;
      if (was === 'unidentified') identifiedOpen++;
      secure.set(s, kind);
    },
    kindOf: (s) => secure.get(s),
    counts() {
      const c = Object.fromEntries(CONNECTION_KINDS.map((k) => [k, 0])) as Record<ConnectionKind, number>;
      for (const kind of secure.values()) c[kind]++;
      c.handshake = Math.max(0, raw.size - secure.size);
      return c;
    },
    get size() {
      return raw.size;
    },
    get secureSize() {
      return secure.size;
    },
    endAll() {
      for (const s of secure.keys()) endThenDestroy(s, o.closeAfterEndMs);
    },
    destroyAll() {
      for (const s of secure.keys()) s.destroy();
      // Also those still in the handshake, which have no TLS socket anyone holds.
      for (const s of raw) s.destroy();
    },
  };
}
