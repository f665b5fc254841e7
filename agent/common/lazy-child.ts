/**
 * A child logger for one request that costs nothing until it writes a line. pino's child()
 * serialises its bindings at once, through the redaction paths (logger.ts): measured at the
 * server (bench server --only connect, level warn), ~5% of its CPU and ~18 KB of garbage per
 * connection request, for lines that were never written. This one makes the real child on the
 * first line at an enabled level; lines at a disabled level stay pino's no-ops.
 *
 * For a request's log lines only: it is not meant to have its level changed.
 */
import type { Bindings, Logger } from 'pino';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

export function lazyChild(base: Logger, bindings: Bindings): Logger {
  let child: Logger | undefined;
  const real = (): Logger => (child ??= base.child(bindings));
  // Everything else (isLevelEnabled, level, flush ...) is the parent's.
  const lazy = Object.create(base) as Logger;
  for (const level of LEVELS) {
    if (!base.isLevelEnabled(level)) continue;
    (lazy as unknown as Record<string, unknown>)[level] = (...args: unknown[]): void =>
      (real()[level] as (...a: unknown[]) => void)(...args);
  }
  lazy.child = ((b: Bindings, o?: unknown) => real().child(b, o as never)) as Logger['child'];
  lazy.bindings = () => real().bindings();
  return lazy;
}
