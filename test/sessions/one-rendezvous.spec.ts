/**
 * `peerlink connect --listen` keeps one session with the device: 100 sequential local
 * connections cause one rendezvous at the server, and one more once the session has idled out.
 */
import test from 'ava';
import { startProgram } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, waitForStderr } from '../helpers/flow.js';
import { exchange, startMeteredFlow } from '../helpers/sessions.js';
import { waitUntil } from '../helpers/harness.js';

const IDLE_MS = 1500;

test('100 sequential connections through --listen cause one rendezvous; one more after the session idled out', async (t) => {
  const echo = await echoService(t);
  const flow = await startMeteredFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const port = await freePort();
  const client = startProgram('client', flow.clientArgs('echo', ['--listen', `127.0.0.1:${port}`, '--session-idle-ms', String(IDLE_MS)]));
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/);

  for (let i = 0; i < 100; i++) {
    const payload = `connection-${i}-`.repeat(20);
    t.is(await exchange(port, payload), payload, `connection ${i}`);
  }
  t.is(await flow.rendezvous(), 1, 'one rendezvous for 100 connections');
  t.is(flow.agent.lines.filter((l) => l.msg === 'S209 session ended').length, 0, 'the session is still up');

  // No local connection for longer than the idle time: the client closes the session, the device sees it end.
  await waitUntil(
    () => flow.agent.lines.some((l) => l.msg === 'S209 session ended'),
    'the device sees the idle session end',
    IDLE_MS + 10_000,
    50,
  );
  const ended = flow.agent.lines.find((l) => l.msg === 'S209 session ended')!;
  t.is(ended.streams, 100, 'the device served the 100 connections as streams of that one session');
  t.is(await exchange(port, 'after-idle'), 'after-idle');
  t.is(await flow.rendezvous(), 2, 'a new session (one more rendezvous) after the idle one was closed');
});
