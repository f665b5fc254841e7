/**
 * The client's side of a relay plan (issue 15, docs/paths.md "Relay plans"). Told when the device
 * joins the relay (RELAY_PLAN with the offer), the client joins RELAY_JOIN_LEAD_MS before then, or at
 * once when the server says the device is waiting already (RELAY_NOW: every direct path of the
 * device failed sooner); if another path wins first it never joins, and releases the offer over the
 * connection that got it (RELAY_RELEASE), so its share is free at once and the server makes no leg.
 */
import type { TLSSocket } from 'node:tls';
import { abortError } from '../common/errors.js';
import { RELAY_JOIN_LEAD_MS, RELAY_PLAN_MAX_MS } from '../protocol/constants.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType, type Frame } from '../protocol/frames.js';

/** An offer we join only when it is due, and release if another path wins first. */
export interface DeferredRelay {
  /** Resolves when our join is due (the planned time less the lead, or RELAY_NOW); rejects on abort. */
  due(signal: AbortSignal): Promise<void>;
  /** Another path won (or none did): RELAY_RELEASE once, if the connection is still open. */
  release(): void;
  /** The relay won: nothing to release; stop listening for RELAY_NOW. */
  done(): void;
}

export interface RelayPlans {
  /** Take RELAY_NOW on this server connection as it arrives (set on every connection a request uses). */
  watch(channel: FrameChannel): void;
  /** Defer the join of the offer `requestId`, made over `conn`, by the device's plan `inMs`. */
  defer(conn: { readonly tls: TLSSocket; readonly channel: FrameChannel }, requestId: Buffer, inMs: number): DeferredRelay;
}

/**
 * RELAY_NOWs kept for an offer not deferred yet (the newest ones; an unclaimed one is the server's
 * answer to a request whose race never began: a failed answer, a connection not kept).
 */
export const RELAY_NOW_EARLY_MAX = 16;

export function createRelayPlans(): RelayPlans {
  /** Requests waiting for their join time, by request ID: an entry lives until its race ends. */
  const waiting = new Map<string, () => void>();
  /**
   * RELAY_NOW that came before its offer was deferred. The channel diverts it as it decodes the
   * read that holds it, while the request, resumed by its result only after that read, has not
   * deferred the offer yet: the server writes the answer and RELAY_NOW back to back (one chunk),
   * or even RELAY_NOW first (sendNow flushes the answer so far). Kept here for defer() to find.
   */
  const early = new Set<string>();
  const onRelayNow = (f: Frame): void => {
    if (f.type !== FrameType.RELAY_NOW) return;
    const key = f.requestId.toString('hex');
    const told = waiting.get(key);
    if (told) return told();
    early.add(key);
    if (early.size > RELAY_NOW_EARLY_MAX) early.delete(early.values().next().value!);
  };
  return {
    watch: (channel) => channel.divert(FrameType.RELAY_NOW, onRelayNow),
    defer(conn, requestId, inMs) {
      const key = requestId.toString('hex');
      let told!: () => void;
      const now = new Promise<void>((resolve) => (told = resolve));
      if (early.delete(key)) told();
      else waiting.set(key, told);
      let released = false;
      const done = (): void => {
        if (waiting.get(key) === told) waiting.delete(key);
      };
      return {
        due: (signal) =>
          new Promise<void>((resolve, reject) => {
            if (signal.aborted) return reject(abortError(signal));
            // A plan past the relay's join deadline (or past setTimeout's range) is the server's or device's
            // mistake: joined by RELAY_PLAN_MAX_MS at the latest.
            const timer = setTimeout(finish, Math.max(0, Math.min(inMs, RELAY_PLAN_MAX_MS) - RELAY_JOIN_LEAD_MS));
            const onAbort = (): void => {
              clearTimeout(timer);
              reject(abortError(signal));
            };
            signal.addEventListener('abort', onAbort, { once: true });
            void now.then(finish);
            function finish(): void {
              clearTimeout(timer);
              signal.removeEventListener('abort', onAbort);
              resolve();
            }
          }),
        release() {
          done();
          if (released || conn.tls.destroyed || !conn.tls.writable) return;
          released = true;
          conn.channel.send({ type: FrameType.RELAY_RELEASE, requestId });
        },
        done,
      };
    },
  };
}
