/**
 * SIGHUP: hot keys apply in the same process without a new registration; a restart-required
 * change is reported and not applied; a broken file is refused with every problem and the old
 * settings keep running (also under systemd: test/systemd/agent-unit.spec.ts).
 */
import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readStateFile } from '../../agent/status/state-file.js';
import { startFlow } from '../helpers/flow.js';
import { waitUntil } from '../helpers/harness.js';

test('SIGHUP applies hot keys, names restart-only ones, refuses a broken file and keeps running', async (t) => {
  const { setup, server, agent } = await startFlow(t, {
    services: { echo: '127.0.0.1:7' },
    agentArgs: (s) => ['--state', join(s.dir, 'state.json')],
    startAgent: false,
  });
  const state = join(setup.dir, 'state.json');
  await agent.waitFor((l) => String(l.msg).startsWith('S202 registered'));
  const registrationsBefore = server.lines.filter((l) => String(l.msg).startsWith('S202')).length;
  const base = await readFile(setup.agentConfig, 'utf8');
  // The state file follows the registration event.
  await waitUntil(
    async () => (await readStateFile(state).catch(() => null))?.registration === 'registered',
    'the state file says registered',
    20_000,
    50,
  );
  const before = await readStateFile(state);

  await writeFile(setup.agentConfig, `${base.replace('log_level = "info"', 'log_level = "debug"')}\nssh = "127.0.0.1:22"\n`);
  agent.child.kill('SIGHUP');
  await agent.waitFor((l) => l.msg === 'settings applied');
  const warn = await agent.waitFor((l) => String(l.msg).includes('apply only after a restart'));
  t.deepEqual(warn.restartRequired, ['log_level']);
  let s = await readStateFile(state);
  await waitUntil(async () => (s = await readStateFile(state)).reloads >= 1, 'the state file shows the reload', 20_000, 50);
  t.deepEqual(s.services, ['echo', 'ssh']);
  t.deepEqual(s.lastReload?.restartRequired, ['log_level']);
  t.is(s.registration, 'registered');
  t.deepEqual(s.publicEndpoint, before?.publicEndpoint, 'the same UDP socket and NAT mapping');
  t.is(s.pid, before?.pid ?? -1);
  t.regex(s.statusText, /restart needed for log_level/);
  t.false(
    agent.lines.some((l) => l.level === 20),
    'log_level stayed info (restart-required)',
  );

  await writeFile(setup.agentConfig, `equipment_id = "X"\n${base.replace(/^interval_ms = \d+$/m, 'interval_ms = 5')}`);
  agent.child.kill('SIGHUP');
  const refused = await agent.waitFor((l) => String(l.msg).startsWith('reload refused'));
  const problems = refused.problems as string[];
  t.true(
    problems.some((p) => p.includes('equipment_id') && p.includes('identity file')),
    problems.join('\n'),
  );
  t.true(
    problems.some((p) => p.includes('registration.interval_ms')),
    problems.join('\n'),
  );
  await waitUntil(async () => (s = await readStateFile(state)).reloads >= 2, 'the state file shows the refused reload', 20_000, 50);
  t.false(s.lastReload?.ok);
  t.deepEqual(s.services, ['echo', 'ssh'], 'the previous settings still run');
  t.is(s.registration, 'registered');
  t.is(agent.child.exitCode, null, 'still running');
  t.is(server.lines.filter((l) => String(l.msg).startsWith('S202')).length, registrationsBefore, 'no new registration was needed');
});
