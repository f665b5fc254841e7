/**
 * pino JSON logs (journald collects stdout). Secrets are redacted by key name wherever they
 * appear, so a careless `log.info({ identity })` still cannot leak a key (P7).
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export const REDACT_PATHS: readonly string[] = Object.freeze(
  ['password', 'secret', 'accessKey', 'registrationKey', 'masterKey', 'psk', 'key', 'keyPem', 'proof', 'tag'].flatMap((k) => [
    k,
    `*.${k}`,
    `*.*.${k}`,
  ]),
);

export interface LoggerOptions {
  readonly name: string;
  readonly level?: string;
  /** Where to write; default stdout (fd 1). The client CLI uses stderr so stdio tunnels stay clean. */
  readonly destination?: DestinationStream | number;
}

export function createLogger(options: LoggerOptions): Logger {
  const dest = options.destination ?? 1;
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      base: { pid: process.pid },
    },
    typeof dest === 'number' ? pino.destination({ fd: dest, sync: true }) : dest,
  );
}

/** A logger that drops everything (library use without logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
