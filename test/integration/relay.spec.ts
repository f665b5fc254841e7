/**
 * When the device cannot dial the client (here: the advertised port is closed), both meet at
 * the server's relay; the end-to-end channel runs inside it and the bytes arrive intact.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { runNodeStdio } from '../helpers/run-process.js';

test('a failed direct dial falls back to the relay within the direct-dial budget, and data flows end to end', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, directDialOnly: true });
  const closedPort = await freePort();
  const data = randomBytes(1024 * 1024);
  const r = await runNodeStdio(
    PROGRAMS.client,
    flow.clientArgs('echo', ['--stdio', '--advertise-port', String(closedPort)]),
    data,
    (kill) => t.teardown(kill),
  );
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /relayed via server/);
  t.is(r.bytes, data.length);
  t.is(r.sha256, createHash('sha256').update(data).digest('hex'));
  t.log(`relayed connect in ${/in (\d+) ms/.exec(r.stderr)?.[1]} ms`);
  await flow.agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('end-to-end channel up through the relay'));
});
