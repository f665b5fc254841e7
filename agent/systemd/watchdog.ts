/**
 * The systemd watchdog (WatchdogSec=): ping WATCHDOG=1 at half the period systemd gave us, but
 * only while our own health check passes. A hung process (event loop stuck, SIGSTOP) sends
 * nothing because the timer cannot fire; a process whose registration loop died sends
 * nothing because the check fails. Either way systemd kills and restarts it.
 */
import type { Logger } from 'pino';
import { rejectUnknownKeys, requireOption } from '../common/options.js';
import { systemTimers, type TimerHandle, type Timers } from '../common/timers.js';
import type { Notifier } from './notify.js';

export interface Health {
  readonly ok: boolean;
  /** Why not, for the log. */
  readonly reason?: string;
}

export interface WatchdogOptions {
  readonly notifier: Notifier;
  readonly health: () => Health;
  readonly env?: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  readonly pid?: number;
  /** Schedules the pings; default: the real clock. */
  readonly timers?: Timers;
}

export interface Watchdog {
  /** The ping period in ms, or null when systemd asked for no watchdog. */
  readonly intervalMs: number | null;
  start(): void;
  stop(): void;
}

/** The watchdog period systemd asked for (WATCHDOG_USEC, for WATCHDOG_PID if set), in ms. */
export function watchdogPeriodMs(env: NodeJS.ProcessEnv, pid: number): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return null;
  return usec / 1000;
}

export function createWatchdog(options: WatchdogOptions): Watchdog {
  rejectUnknownKeys('watchdog options', options, ['notifier', 'health', 'env', 'logger', 'pid', 'timers']);
  const notifier = requireOption('watchdog options', 'notifier', options.notifier);
  const health = requireOption('watchdog options', 'health', options.health);
  const periodMs = notifier.enabled ? watchdogPeriodMs(options.env ?? process.env, options.pid ?? process.pid) : null;
  const intervalMs = periodMs === null ? null : Math.max(100, Math.floor(periodMs / 2));
  const timers = options.timers ?? systemTimers;
  let timer: TimerHandle | undefined;
  let failing = false;

  function tick(): void {
    const h = health();
    if (h.ok) {
      if (failing) options.logger?.info('health check passes again; watchdog pings resumed');
      failing = false;
      void notifier.send({ WATCHDOG: '1' });
    } else if (!failing) {
      failing = true;
      options.logger?.error({ reason: h.reason }, 'health check failed; withholding watchdog pings so systemd restarts us');
    }
  }

  return {
    intervalMs,
    start() {
      if (intervalMs === null || timer) return;
      timer = timers.setInterval(tick, intervalMs);
      timer.unref();
    },
    stop() {
      timers.clearInterval(timer);
      timer = undefined;
    },
  };
}
