/** --stdio: the tunnel on stdin/stdout, as ssh's ProxyCommand uses it. */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { runNodeStdio } from '../helpers/run-process.js';

test('stdin goes through the tunnel and the echo comes back on stdout; EOF ends the session', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const data = randomBytes(1024 * 1024);
  const r = await runNodeStdio(PROGRAMS.client, flow.clientArgs('echo', ['--stdio']), data, (kill) => t.teardown(kill));
  t.is(r.code, 0, r.stderr);
  t.is(r.bytes, data.length);
  t.is(r.sha256, createHash('sha256').update(data).digest('hex'));
  t.regex(r.stderr, /connected directly/);
});
