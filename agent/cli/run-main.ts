/** Shared CLI plumbing: print an error plainly (with every config problem) and exit with its code. */
import type { Logger } from 'pino';
import { ConfigError, isPeerlinkError } from '../common/errors.js';
import { exitCodeFor } from './exit-codes.js';

export function reportAndExit(program: string, err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${program}: invalid configuration [${err.code}]:\n${err.problems.map((p) => `  - ${p}`).join('\n')}\n`);
  } else if (isPeerlinkError(err)) {
    process.stderr.write(`${program}: ${err.message} [${err.code}]\n`);
  } else {
    process.stderr.write(`${program}: ${(err as Error)?.message ?? String(err)}\n`);
  }
  process.exit(exitCodeFor(err));
}

/** Resolve once on the first of the given signals. */
export function onceSignal(signals: readonly NodeJS.Signals[]): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handler = (s: NodeJS.Signals): void => {
      for (const sig of signals) process.off(sig, handler);
      resolve(s);
    };
    for (const sig of signals) process.on(sig, handler);
  });
}

/** How long the agent's and the client's orderly stop may take after a signal before they exit anyway. */
export const STOP_BACKSTOP_MS = 5_000;

/**
 * After a stop signal: should the orderly stop hang (a router that does not answer the port
 * mapping's release, a close that never completes), exit 0 anyway after `ms`, saying so. The
 * timer does not hold the process: a stop that completes exits as before.
 */
export function exitIfStopHangs(ms: number, logger: Logger): void {
  setTimeout(() => {
    logger.error({ afterMs: ms }, 'stop did not complete in time; exiting');
    process.exit(0);
  }, ms).unref();
}
