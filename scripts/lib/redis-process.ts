/**
 * A throwaway redis-server (the Debian package) on a free loopback port, for specs and benchmarks:
 * no persistence, never a shared or fixed port. `stop()` then `start()` again on the same port
 * emulates an outage and a restart (with an empty store, as after a crash without persistence).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { freePort } from './free-port.js';

export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly running: boolean;
  /** The redis-server process ID while running (benchmarks read its CPU time). */
  readonly pid: number | undefined;
}

export const REDIS_MISSING =
  'redis-server is not installed (Debian package redis-server): `npm test` or `npm run bench -- server` as root installs it';

/**
 * `persistDir`: keep an append-only file there (fsync on every write), so a restart after SIGKILL
 * comes back with what was written (the fault specs' "restarted from its own persistence").
 */
export async function startRedis(o: { persistDir?: string } = {}): Promise<RedisProcess> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const r: RedisProcess = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== null;
    },
    get pid() {
      return child?.pid;
    },
    async start() {
      const persistence = o.persistDir ? ['--dir', o.persistDir, '--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
      const c = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--loglevel', 'warning'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const out: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`redis-server did not start on ${port}: ${out.join(' | ')}`)), 10_000);
        c.once('error', (err: NodeJS.ErrnoException) => {
          clearTimeout(t);
          reject(err.code === 'ENOENT' ? new Error(REDIS_MISSING) : err);
        });
        c.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`redis-server exited (${code}): ${out.join(' | ')}`));
        });
        // Readiness: the port answers PING (log lines differ across versions and levels).
        const poll = async (): Promise<void> => {
          const { connect } = await import('node:net');
          for (;;) {
            const ok = await new Promise<boolean>((res) => {
              const s = connect(port, '127.0.0.1', () => s.write('PING\r\n'));
              s.once('data', (d) => {
                s.destroy();
                res(d.toString().startsWith('+PONG'));
              });
              s.once('error', () => res(false));
            });
            if (ok) return;
            if (c.exitCode !== null) return;
            await new Promise((w) => setTimeout(w, 50));
          }
        };
        void poll().then(() => {
          clearTimeout(t);
          resolve();
        });
      });
      for (const s of [c.stdout!, c.stderr!]) createInterface({ input: s }).on('line', (l) => out.push(l));
      c.removeAllListeners('exit');
      child = c;
    },
    async stop() {
      const c = child;
      child = null;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGKILL');
      await exited;
    },
  };
  await r.start();
  return r;
}
