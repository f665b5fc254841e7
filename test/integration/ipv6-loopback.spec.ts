/**
 * The real programs over IPv6 (issue 14), on this machine's loopback: a dual-stack server ("::"),
 * an agent whose server.host is the IPv6 literal ::1 (so it registers over IPv6 only), and clients
 * over IPv6 ("[::1]:port") and over IPv4: both get their bytes echoed through a direct tunnel.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { runNodeStdio } from '../helpers/run-process.js';

test('an agent registered over IPv6 serves clients arriving over IPv6 and over IPv4, directly', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, serverAddress: '::1', listenHost: '::' });
  const registered = flow.server.lines.filter((l) => l.msg === 'S202 device registered').map((l) => String(l.mapping));
  t.true(registered.length > 0 && registered.every((m) => m.startsWith('::1:')), `registered over IPv6: ${registered.join(', ')}`);
  for (const server of [`[::1]:${flow.setup.tlsPort}`, `127.0.0.1:${flow.setup.tlsPort}`]) {
    const data = randomBytes(256 * 1024);
    const args = [
      'connect',
      flow.setup.equipmentId,
      '--server',
      server,
      '--server-name',
      'localhost',
      '--ca',
      flow.setup.caFile,
      '--password-file',
      flow.setup.passwordFile,
      '--service',
      'echo',
      '--stdio',
    ];
    const r = await runNodeStdio(PROGRAMS.client, args, data, (kill) => t.teardown(kill));
    t.is(r.code, 0, r.stderr);
    t.is(r.sha256, createHash('sha256').update(data).digest('hex'), server);
    t.regex(r.stderr, /connected directly/, server);
    t.log(`${server}: ${/connected directly[^\n]*/.exec(r.stderr)?.[0]}`);
  }
});
