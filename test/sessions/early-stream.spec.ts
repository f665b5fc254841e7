/**
 * An early stream (client.open(…, { early: true }), what `--listen` uses) sends its first bytes
 * with its CONNECT, before the device's answer. The device still authorises the stream first:
 * bytes sent to a stream it refuses never reach the service, the stream ends with the refusal's
 * code (SERVICE_REFUSED), and the session goes on carrying the other streams.
 */
import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { ErrorCodes } from '../../agent/common/errors.js';
import { echoService } from '../helpers/flow.js';
import { roundTrip, sessionClient, startMeteredFlow } from '../helpers/sessions.js';

test('early bytes to a refused stream never reach the service; the stream ends with SERVICE_REFUSED; the session goes on', async (t) => {
  const echo = await echoService(t);
  // "web": a service that counts every connection and byte it gets.
  const got = { connections: 0, bytes: 0 };
  const web = createServer((s) => {
    got.connections++;
    s.on('data', (d: Buffer) => (got.bytes += d.length));
    s.on('error', () => undefined);
    s.on('end', () => s.end('web-answer'));
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => web.close(() => resolve())));
  const webPort = (web.address() as { port: number }).port;
  const flow = await startMeteredFlow(t, { services: { echo: `127.0.0.1:${echo.port}`, web: `127.0.0.1:${webPort}` } });
  const client = sessionClient(t, flow, 'echo');

  // Allowed: the bytes written before the answer come back.
  const first = await client.open(undefined, 'echo', { early: true });
  t.is(await roundTrip(first.stream, 'early-echo'), 'early-echo');
  const allowed = await client.open(undefined, 'web', { early: true });
  t.is(await roundTrip(allowed.stream, 'hello-web'), 'web-answer');
  t.is(got.bytes, 'hello-web'.length);

  // Remove "web" from the allow-list while the session lives, then write to an early stream at once.
  const config = await readFile(flow.setup.agentConfig, 'utf8');
  await writeFile(flow.setup.agentConfig, config.replace(/^web = .*$/m, ''));
  flow.agent.child.kill('SIGHUP');
  await flow.agent.waitFor((l) => l.msg === 'settings applied');
  const before = { ...got };
  const refused = await client.open(undefined, 'web', { early: true });
  t.true(refused.reused, 'the stream rode the live session');
  const err = await t.throwsAsync(roundTrip(refused.stream, 'x'.repeat(64 * 1024)));
  t.is((err as { code?: string }).code, ErrorCodes.SERVICE_REFUSED);
  t.deepEqual(got, before, 'the refused stream reached the service with neither a connection nor a byte');

  const still = await client.open(undefined, 'echo', { early: true });
  t.is(await roundTrip(still.stream, 'after'), 'after');
  t.is(await flow.rendezvous(), 1, 'every stream, refused or not, rode one rendezvous');
  t.deepEqual(
    flow.agent.lines.filter((l) => String(l.msg).startsWith('stream refused')).map((l) => l.service),
    ['web'],
  );
});
