/**
 * A library user's process that made its requests over the kept server connection exits on its
 * own after client.stop(), long before the connection's keep time: stop() closes it and nothing
 * of it is left active.
 */
import test from 'ava';
import { SERVER_KEEP_IDLE_MS } from '../../agent/client/client.js';
import { echoService } from '../helpers/flow.js';
import { runLibraryUser } from '../helpers/run-library-user.js';
import { clientConnections, startCountedFlow } from '../helpers/server-link.js';

const N = 5;
/** Well under the keep time: a process still alive then is held by the kept connection. */
const EXIT_WITHIN_MS = 15_000;

test('requests over the kept server connection, then stop(): the process exits on its own', async (t) => {
  t.true(EXIT_WITHIN_MS < SERVER_KEEP_IDLE_MS, 'the exit deadline must be shorter than the keep time it rules out');
  const echo = await echoService(t);
  const flow = await startCountedFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const { tlsPort, caPem, equipmentId, password } = flow.setup;
  const job = { tlsPort, caPem, equipmentId, password, service: 'echo', n: N, sessionIdleMs: 0 };
  const { exited, report, out } = await runLibraryUser(t, job, EXIT_WITHIN_MS);
  t.is(exited, 0, `the library user exits by itself after stop() (output: ${out})`);
  t.deepEqual(
    report.answers,
    Array.from({ length: N }, (_, i) => `open-${i}`),
  );
  t.deepEqual(report.handles, [], 'no socket or timer left after stop()');
  t.is(await clientConnections(flow), 1, `the ${N} requests rode one kept connection`);
});
