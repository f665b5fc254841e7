/**
 * P10: what a listener may spend on connections that have not yet proved anything (before the
 * reverse token, before the PSK handshake, before the local tunnel is up). Each is admitted only
 * while fewer than `maxPending` are pending, and is destroyed at an absolute deadline counted
 * from its accept (not an idle timeout, so one byte a second does not keep it alive). Whatever
 * the peer does (half-close, silence, a trickle, a reset), the connection is gone by the deadline.
 */
import { rejectUnknownKeys } from './options.js';

/** What the gate needs of a connection: net.Socket and tls.TLSSocket both qualify. */
export interface GatedConnection {
  destroy(): void;
  once(event: 'close', listener: () => void): unknown;
  readonly destroyed: boolean;
}

export interface PreAuthGateOptions {
  /** Connections pending at once; one more is destroyed at once. */
  readonly maxPending: number;
  /** From accept until the connection must have proved itself. */
  readonly deadlineMs: number;
}

export interface Admission {
  /** The connection proved itself: stop its deadline and free its slot (idempotent). */
  done(): void;
}

export interface PreAuthGate {
  /**
   * Admit a fresh connection, or destroy it at once and return null when `maxPending` are already
   * pending. `onExpire` runs (before the destroy) when the deadline passes first.
   */
  admit(conn: GatedConnection, onExpire?: () => void): Admission | null;
  pending(): number;
}

export function createPreAuthGate(input: PreAuthGateOptions): PreAuthGate {
  rejectUnknownKeys('pre-auth gate options', input, ['maxPending', 'deadlineMs']);
  const o = Object.freeze({ maxPending: input.maxPending, deadlineMs: input.deadlineMs });
  if (!(Number.isInteger(o.maxPending) && o.maxPending >= 1))
    throw new RangeError(`maxPending: expected an integer >= 1, found ${o.maxPending}`);
  if (!(Number.isFinite(o.deadlineMs) && o.deadlineMs > 0)) throw new RangeError(`deadlineMs: expected > 0, found ${o.deadlineMs}`);
  const pending = new Set<GatedConnection>();

  return {
    pending: () => pending.size,
    admit(conn, onExpire) {
      if (pending.size >= o.maxPending) {
        conn.destroy();
        return null;
      }
      pending.add(conn);
      // The timer belongs to this admission: cleared by done() or by the close, whichever is first.
      const timer = setTimeout(() => {
        pending.delete(conn);
        onExpire?.();
        conn.destroy();
      }, o.deadlineMs);
      timer.unref();
      const done = (): void => {
        clearTimeout(timer);
        pending.delete(conn);
      };
      conn.once('close', done);
      if (conn.destroyed) done();
      return { done };
    },
  };
}
