/**
 * The library's client.open() reuses one session by default: N sequential open()s in a process
 * that uses the library cause one connection request at the server, and once client.stop() has
 * returned nothing holds the process (it exits on its own, long before the session's idle time).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { DIST } from '../../scripts/lib/program.js';
import { SESSION_IDLE_MS } from '../../agent/client/client.js';
import { echoService } from '../helpers/flow.js';
import { startMeteredFlow } from '../helpers/sessions.js';

const N = 20;
/** Well under the session's idle time: a process still alive then is held by something. */
const EXIT_WITHIN_MS = 15_000;

test('N sequential client.open() with the default options: one rendezvous; after stop() the process exits on its own', async (t) => {
  t.true(EXIT_WITHIN_MS < SESSION_IDLE_MS, 'the exit deadline must be shorter than the idle close it rules out');
  const echo = await echoService(t);
  const flow = await startMeteredFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const { tlsPort, caPem, equipmentId, password } = flow.setup;
  const job = { tlsPort, caPem, equipmentId, password, service: 'echo', n: N };
  const child = spawn(process.execPath, [join(DIST, 'test', 'helpers', 'library-user.js'), JSON.stringify(job)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  const reported = new Promise<void>((resolve) =>
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve();
    }),
  );
  const exit = new Promise<number | string>((resolve) => child.once('exit', (code) => resolve(code ?? 'killed')));
  await Promise.race([reported, exit]);
  // From the report (written after stop() returned) the process has EXIT_WITHIN_MS to end.
  const exited = await Promise.race([exit, new Promise<string>((r) => setTimeout(() => r('still running'), EXIT_WITHIN_MS).unref())]);
  const report = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { answers?: string[]; reused?: boolean[]; handles?: string[] };
  t.is(exited, 0, `the library user exits by itself after stop() (output: ${out})`);
  t.deepEqual(
    report.answers,
    Array.from({ length: N }, (_, i) => `open-${i}`),
  );
  t.deepEqual(report.reused, [false, ...Array.from({ length: N - 1 }, () => true)], 'every open() after the first rode the session');
  t.deepEqual(report.handles, [], 'no socket, server or timer left after stop()');
  t.is(await flow.rendezvous(), 1, `one connection request at the server for ${N} open()s`);
});
