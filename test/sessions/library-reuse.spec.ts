/**
 * The library's client.open() reuses one session by default: N sequential open()s in a process
 * that uses the library cause one connection request at the server, and once client.stop() has
 * returned nothing holds the process (it exits on its own, long before the session's idle time).
 */
import test from 'ava';
import { SESSION_IDLE_MS } from '../../agent/client/client.js';
import { echoService } from '../helpers/flow.js';
import { runLibraryUser } from '../helpers/run-library-user.js';
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
  const { exited, report, out } = await runLibraryUser(t, job, EXIT_WITHIN_MS);
  t.is(exited, 0, `the library user exits by itself after stop() (output: ${out})`);
  t.deepEqual(
    report.answers,
    Array.from({ length: N }, (_, i) => `open-${i}`),
  );
  t.deepEqual(report.reused, [false, ...Array.from({ length: N - 1 }, () => true)], 'every open() after the first rode the session');
  t.deepEqual(report.handles, [], 'no socket, server or timer left after stop()');
  t.is(await flow.rendezvous(), 1, `one connection request at the server for ${N} open()s`);
});
