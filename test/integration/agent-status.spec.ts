/** `peerlink-agent status [--json]` reads the running daemon's state file: registered, server, public address, last ack, uptime. */
import test from 'ava';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { loadIdentity } from '../../agent/device/identity.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { startFlow } from '../helpers/flow.js';
import { runNode } from '../helpers/run-process.js';

test('status shows the registered agent, then says it is not running once stopped', async (t) => {
  const { setup, agent } = await startFlow(t, {
    services: { echo: '127.0.0.1:7' },
    agentArgs: (s) => ['--state', join(s.dir, 'state.json')],
    startAgent: false,
  });
  const state = join(setup.dir, 'state.json');
  const reg = await agent.waitFor((l) => String(l.msg).startsWith('S202 registered'));
  // the snapshot follows the registration event
  let json: Record<string, any> = {};
  for (let i = 0; i < 50 && json.registration !== 'registered'; i++) {
    const r = await runNode(PROGRAMS.agent, ['status', '--json', '--state', state]);
    if (r.code === 0) json = JSON.parse(r.stdout) as Record<string, any>;
    else await new Promise((res) => setTimeout(res, 100));
  }
  t.true(json.running);
  t.is(json.registration, 'registered');
  t.is(json.equipmentId, setup.equipmentId);
  t.is(json.pid, agent.child.pid);
  t.deepEqual(json.server, { host: '127.0.0.1', udpPort: setup.udpPort, tlsPort: setup.tlsPort });
  t.is(`${json.publicEndpoint.address}:${json.publicEndpoint.port}`, String(reg.publicEndpoint));
  t.truthy(json.lastAckAt);
  t.is(json.portMapping.state, 'off');
  t.is(typeof json.portMapping.reversePort, 'number');
  t.is(json.lastConnectionServedAt, null);
  t.regex(json.statusText, /^registered with 127\.0\.0\.1:\d+ as /);

  // The state file is world-readable (0644): it must hold no secret (P7).
  const identity = await loadIdentity(setup.identityFile);
  const raw = await readFile(state, 'utf8');
  t.is((await stat(state)).mode & 0o777, 0o644);
  for (const secret of [
    identity.registrationKey.toString('base64'),
    identity.accessKey.toString('base64'),
    setup.password,
    setup.masterKey.toString('base64'),
  ]) {
    t.false(raw.includes(secret), 'a secret in the state file');
  }

  const text = await runNode(PROGRAMS.agent, ['status', '--state', state]);
  t.is(text.code, 0);
  for (const row of [
    /^agent\s+running \(pid \d+\)/m,
    /^registered\s+yes$/m,
    /^public address\s+127\.0\.0\.1:\d+ \(as the server sees us\)/m,
    /^last ack\s+\S+ \(\d+ s ago\)/m,
    /^uptime\s+0h 0m \d+s/m,
    /^port mapping\s+off \(reverse port \d+\)/m,
    /^last connection served\s+never/m,
  ]) {
    t.regex(text.stdout, row);
  }

  await agent.stop();
  const after = await runNode(PROGRAMS.agent, ['status', '--state', state]);
  t.is(after.code, 3);
  t.regex(after.stdout, /NOT running/);
  const missing = await runNode(PROGRAMS.agent, ['status', '--json', '--state', join(setup.dir, 'nope.json')]);
  t.is(missing.code, 3);
  t.false((JSON.parse(missing.stdout) as { running: boolean }).running);
});
