/**
 * The reverse strategy on loopback: the device's dial to the client fails (closed advertised
 * port) and hole punching is off, so the client dials the agent's own port, names its request
 * with the token, and the same end-to-end channel runs over that connection.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { runNodeStdio } from '../helpers/run-process.js';

test('with the device dial failing, the client dials the agent’s reverse port and data flows end to end', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, dialExtra: 'hole_punch = false' });
  const listening = await flow.agent.waitFor((l) => l.msg === 'reverse port listening');
  const closedPort = await freePort();
  const data = randomBytes(512 * 1024);
  const r = await runNodeStdio(
    PROGRAMS.client,
    flow.clientArgs('echo', ['--stdio', '--advertise-port', String(closedPort)]),
    data,
    (kill) => t.teardown(kill),
  );
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, new RegExp(`connected directly: we dialled the device's open port 127\\.0\\.0\\.1:${String(listening.port)}`));
  t.is(r.bytes, data.length);
  t.is(r.sha256, createHash('sha256').update(data).digest('hex'));
  await flow.agent.waitFor((l) => l.via === 'reverse' && typeof l.msg === 'string' && l.msg.startsWith('S208 direct channel up'));
});
