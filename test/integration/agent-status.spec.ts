/** `peerlink-agent status [--json]` reads the running daemon's state file: registered, server, public address, last ack, uptime. */
import test from 'ava';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { loadIdentity } from '../../agent/device/identity.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { PROGRAMS, startProgram, type Program } from '../../scripts/lib/program.js';
import { runNode } from '../helpers/run-process.js';

test('status shows the registered agent, then says it is not running once stopped', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-status-'));
  const programs: Program[] = [];
  try {
    const setup = await createLoopbackSetup({ dir, services: { echo: '127.0.0.1:7' } });
    const state = join(dir, 'state.json');
    const server = startProgram('server', ['--config', setup.serverConfig]);
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    const agent = startProgram('agent', ['--config', setup.agentConfig, '--state', state]);
    programs.push(agent);
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
    for (const secret of [identity.registrationKey.toString('base64'), identity.accessKey.toString('base64'), setup.password, setup.masterKey.toString('base64')]) {
      t.false(raw.includes(secret), 'a secret in the state file');
    }

    const text = await runNode(PROGRAMS.agent, ['status', '--state', state]);
    t.is(text.code, 0);
    for (const row of [/^agent\s+running \(pid \d+\)/m, /^registered\s+yes$/m, /^public address\s+127\.0\.0\.1:\d+ \(as the server sees us\)/m, /^last ack\s+\S+ \(\d+ s ago\)/m, /^uptime\s+0h 0m \d+s/m, /^port mapping\s+off \(reverse port \d+\)/m, /^last connection served\s+never/m]) {
      t.regex(text.stdout, row);
    }

    await agent.stop();
    const after = await runNode(PROGRAMS.agent, ['status', '--state', state]);
    t.is(after.code, 3);
    t.regex(after.stdout, /NOT running/);
    const missing = await runNode(PROGRAMS.agent, ['status', '--json', '--state', join(dir, 'nope.json')]);
    t.is(missing.code, 3);
    t.false((JSON.parse(missing.stdout) as { running: boolean }).running);
  } finally {
    await Promise.all(programs.map((p) => p.stop()));
    await rm(dir, { recursive: true, force: true });
  }
});
