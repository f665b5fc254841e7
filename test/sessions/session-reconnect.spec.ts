/**
 * `--listen` replaces a session that died: after the device's agent restarts (its end of the
 * session is gone), the next local connection makes a new session (one more rendezvous) and works.
 */
import test from 'ava';
import { startProgram } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, waitForStderr } from '../helpers/flow.js';
import { exchange, startMeteredFlow } from '../helpers/sessions.js';

test('a session that died is replaced by the next local connection', async (t) => {
  const echo = await echoService(t);
  const flow = await startMeteredFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const port = await freePort();
  const client = startProgram('client', flow.clientArgs('echo', ['--listen', `127.0.0.1:${port}`, '--log-level', 'info']));
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/);
  t.is(await exchange(port, 'before'), 'before');
  t.is(await flow.rendezvous(), 1);

  // The device's end goes away with its agent; a new agent registers.
  await flow.agent.stop();
  await client.waitFor((l) => String(l.msg).startsWith('session to the device ended'));
  const agent = startProgram('agent', ['--config', flow.setup.agentConfig]);
  t.teardown(() => agent.stop().then(() => undefined));
  await agent.waitFor((l) => String(l.msg).startsWith('S202 registered'));

  t.is(await exchange(port, 'after'), 'after');
  t.is(await exchange(port, 'and again'), 'and again');
  t.is(await flow.rendezvous(), 2, 'one new session for the connections after the old one died');
});
