/**
 * The device authorises each stream of a session by the service it names: a stream to a service
 * outside the allow-list is refused (SERVICE_REFUSED) while the others on the same session work,
 * and a service removed from the allow-list by a reload is refused to the next stream of a live session.
 */
import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes } from '../../agent/common/errors.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { waitUntil } from '../helpers/harness.js';
import { runNode } from '../helpers/run-process.js';
import { echoService } from '../helpers/flow.js';
import { roundTrip, sessionClient, startMeteredFlow } from '../helpers/sessions.js';

test('a stream naming a service not allowed is refused; other streams on the same session work; a reload applies to the next stream', async (t) => {
  const echo = await echoService(t);
  const other = await echoService(t);
  const flow = await startMeteredFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}`, web: `127.0.0.1:${other.port}` },
    agentArgs: (s) => ['--state', join(s.dir, 'state.json')],
  });
  const client = sessionClient(t, flow, 'echo');

  const first = await client.open();
  t.falsy(first.reused);
  t.is(await roundTrip(first.stream, 'one'), 'one');

  const refused = await t.throwsAsync(client.open(undefined, 'secret'));
  t.is((refused as { code?: string }).code, ErrorCodes.SERVICE_REFUSED);
  const bad = await t.throwsAsync(client.open(undefined, 'peerlink-session'));
  t.is((bad as { code?: string }).code, ErrorCodes.SERVICE_REFUSED, 'the session service is not a stream service');

  const [a, b] = await Promise.all([client.open(), client.open(undefined, 'web')]);
  t.true(a.reused && b.reused, 'both rode the live session');
  t.deepEqual(await Promise.all([roundTrip(a.stream, 'two'), roundTrip(b.stream, 'three')]), ['two', 'three']);

  // Remove "web" from the allow-list while the session lives.
  const config = await readFile(flow.setup.agentConfig, 'utf8');
  await writeFile(flow.setup.agentConfig, config.replace(/^web = .*$/m, ''));
  flow.agent.child.kill('SIGHUP');
  await flow.agent.waitFor((l) => l.msg === 'settings applied');
  const gone = await t.throwsAsync(client.open(undefined, 'web'));
  t.is((gone as { code?: string }).code, ErrorCodes.SERVICE_REFUSED, 'the reload applies to the next stream');
  const still = await client.open();
  t.true(still.reused);
  t.is(await roundTrip(still.stream, 'four'), 'four');

  t.is(await flow.rendezvous(), 1, 'every stream, refused or not, rode one rendezvous');
  const refusals = flow.agent.lines.filter((l) => String(l.msg).startsWith('stream refused'));
  t.deepEqual(
    refusals.map((l) => l.service),
    ['secret', 'peerlink-session', 'web'],
  );
  // Counted, too: `peerlink-agent status` shows them (its snapshot is written every few seconds).
  const sessions = async (): Promise<Record<string, number>> => {
    const r = await runNode(PROGRAMS.agent, ['status', '--json', '--state', join(flow.setup.dir, 'state.json')]);
    return r.code === 0 ? ((JSON.parse(r.stdout) as { sessions: Record<string, number> }).sessions ?? {}) : {};
  };
  let counted: Record<string, number> = {};
  await waitUntil(
    async () => ((counted = await sessions()).streamsRefusedService ?? 0) >= 3,
    'the agent status to count the refusals',
    15_000,
    250,
  ).catch(() => undefined);
  t.is(counted.streamsRefusedService, 3, 'the refusals are not in the agent status');
  t.is(counted.streamsRefusedBusy, 0);
  t.is(counted.sessionProtocolErrors, 0);
});
