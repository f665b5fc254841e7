/**
 * A device that does not serve sessions (an agent from before them, or `dial.sessions = false`)
 * refuses the session's service names (the mux's, then HTTP/2's, which an agent from before the mux
 * serves); the client then opens a tunnel per connection, and keeps doing so without asking again.
 */
import test from 'ava';
import { startProgram } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, waitForStderr } from '../helpers/flow.js';
import { exchange, startMeteredFlow } from '../helpers/sessions.js';

test('a device without sessions: --listen falls back to a tunnel per connection', async (t) => {
  const echo = await echoService(t);
  const flow = await startMeteredFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, dialExtra: 'sessions = false' });
  const port = await freePort();
  const client = startProgram('client', flow.clientArgs('echo', ['--listen', `127.0.0.1:${port}`]));
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/);
  for (const text of ['one', 'two', 'three']) t.is(await exchange(port, text), text);
  // The two refused session requests (mux, then HTTP/2), then a tunnel for each of the three connections.
  t.is(await flow.rendezvous(), 5);
  t.is(flow.agent.lines.filter((l) => String(l.msg).includes('a session with streams was asked for')).length, 2, 'each asked once only');
  t.true(
    client.stderr.some((l) => /does not offer sessions/.test(l)) || client.lines.some((l) => /does not offer sessions/.test(String(l.msg))),
  );
});
