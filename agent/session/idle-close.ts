/**
 * A device session's idle bound (device-session.ts, mux-device-session.ts): with no stream open for
 * `idleMs` the session is closed (gracefully), so a client that went quiet holds nothing for ever.
 */
import type { Logger } from 'pino';

export interface IdleClose {
  /** The last stream is gone (or none came yet): close after idleMs unless busy() first. */
  idle(): void;
  /** A stream is open (or the session ends): no idle close. */
  busy(): void;
}

export function createIdleClose(idleMs: number, log: Logger, close: () => void): IdleClose {
  let timer: NodeJS.Timeout | null = null;
  const busy = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  return {
    idle() {
      busy();
      timer = setTimeout(() => {
        timer = null;
        log.info({ idleMs }, 'session idle: closed');
        close();
      }, idleMs);
      timer.unref();
    },
    busy,
  };
}
