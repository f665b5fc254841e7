/**
 * The broker's graceful stop: with a grace period, new client requests are answered "shutting
 * down" while those in flight finish (devices may still attach, so the listener stays open);
 * requests still waiting for their device then get an answer; the last answers get a moment to
 * reach their clients; then every connection still open is closed, whatever the peers do.
 */
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import type { ConnectionTracker } from './connection-tracker.js';
import type { Relay } from './relay.js';

/**
 * At shutdown, after the drain: how long peers get to close once the last answers are sent. Then
 * the sockets are destroyed; what is queued in the kernel still goes out (nothing unread: a FIN, not a reset).
 */
export const STOP_LAST_WORDS_MS = 500;

export interface DrainContext {
  readonly logger: Logger;
  readonly relay: Relay;
  readonly tracker: ConnectionTracker;
  /** Requests being served now. */
  readonly inFlight: () => number;
  /** Calls `wake` when the last request in flight ends (null: stop calling). */
  readonly onIdle: (wake: (() => void) | null) => void;
  /** Answers the requests still waiting for their device; how many there were. */
  readonly answerWaiting: () => number;
}

/** Call with the broker already draining (new requests refused). */
export async function drainAndClose(server: Server, graceMs: number, d: DrainContext): Promise<void> {
  const busy = (): boolean => d.inFlight() > 0 || d.relay.active > 0;
  if (graceMs > 0 && busy()) await finishInFlight(graceMs, busy, d);
  if (d.answerWaiting() > 0) {
    await new Promise((r) => setImmediate(r)); // their CONNECT_RESULT is written before the FINs below
  }
  // One line for what the drain leaves behind (peers gone silent, half-closed, mid-handshake,
  // idle relay sessions): all of it is closed now, whatever the peers do.
  const open = d.tracker.counts();
  const left = Object.values(open).reduce((n, c) => n + c, 0);
  d.logger[busy() ? 'warn' : 'info']({ open, inFlight: d.inFlight(), relaySessions: d.relay.active }, 'closing the connections still open');
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  d.relay.stop();
  if (graceMs > 0 && left > 0) await lastWords(graceMs, d.tracker);
  d.tracker.destroyAll();
  await closed;
}

/** Wait, up to graceMs, for the requests in flight and the relay sessions to end. */
async function finishInFlight(graceMs: number, busy: () => boolean, d: DrainContext): Promise<void> {
  d.logger.info({ inFlight: d.inFlight(), relaySessions: d.relay.active, graceMs }, 'draining: no new requests; finishing those in flight');
  const until = Date.now() + graceMs;
  while (busy() && Date.now() < until) {
    await new Promise<void>((r) => {
      d.onIdle(r);
      setTimeout(r, 100).unref();
    });
  }
  d.onIdle(null);
}

/**
 * Let the last answers (CONNECT_RESULT) reach their clients before the sockets go. Only secure
 * connections can have any; those still in the handshake are destroyed after.
 */
async function lastWords(graceMs: number, tracker: ConnectionTracker): Promise<void> {
  tracker.endAll();
  const until = Date.now() + Math.min(graceMs, STOP_LAST_WORDS_MS);
  while (tracker.secureSize > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
}
