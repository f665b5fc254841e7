/** Run lab commands (ip, nft, sysctl ...), with errors that say which command failed and why. */
import { execFile } from 'node:child_process';

export class LabCommandError extends Error {
  constructor(
    readonly command: readonly string[],
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`lab command failed: ${command.join(' ')}: ${stderr.trim()}`, options);
    this.name = 'LabCommandError';
  }
}

/**
 * System tools only: under `npm run`/`npx`, node_modules/.bin comes first in PATH, and an npm
 * package there is called `nft` (a file tracer), which would silently stand in for nftables.
 */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const systemEnv = (): NodeJS.ProcessEnv => ({ ...process.env, PATH: SYSTEM_PATH });

export function run(command: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(command[0]!, command.slice(1), { maxBuffer: 16 * 1024 * 1024, env: systemEnv() }, (err, stdout, stderr) => {
      if (err) reject(new LabCommandError(command, stderr || err.message, { cause: err }));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Run a command inside network namespace `ns`. */
export function inNs(ns: string, command: readonly string[], input?: string): Promise<string> {
  return run(['ip', 'netns', 'exec', ns, ...command], input);
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;
