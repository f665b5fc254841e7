/**
 * Graceful shutdown of a server node (SIGTERM): it refuses new requests at once (exit 24, "shutting
 * down", so the client tries another node), lets the request in flight finish — the device still
 * attaches, here only after the signal — then exits 0.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { runNode, runNodeStdio } from '../helpers/run-process.js';

test('SIGTERM: no new requests, the one in flight completes, exit 0', async (t) => {
  const echo = await echoService(t);
  const f = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, serverExtra: '[shutdown]\ngrace_ms = 20000' });
  const agentPid = f.agent.child.pid!;
  // The device is registered but, frozen, cannot answer yet: the request stays in flight.
  process.kill(agentPid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(agentPid, 'SIGCONT');
    } catch {
      /* already gone */
    }
  });
  const data = randomBytes(64 * 1024);
  const inFlight = runNodeStdio(PROGRAMS.client, f.clientArgs('echo', ['--stdio']), data, (kill) => t.teardown(kill));
  await f.server.waitFor((l) => l.msg === 'S205 notification sent to the device mapping', 15_000);

  f.server.child.kill('SIGTERM');
  await f.server.waitFor((l) => l.msg === 'draining: no new requests; finishing those in flight');
  const late = await runNode(PROGRAMS.client, f.clientArgs('echo', ['--stdio']));
  t.is(late.code, 24, `a new request is refused while draining: ${late.stderr}`);
  t.regex(late.stderr, /shutting down/);

  process.kill(agentPid, 'SIGCONT');
  const r = await inFlight;
  t.is(
    r.code,
    0,
    `the request in flight completed: ${r.stderr}\n${f.server.lines.map((l) => JSON.stringify(l)).join('\n')}\n${f.agent.lines
      .slice(-8)
      .map((l) => JSON.stringify(l))
      .join('\n')}`,
  );
  t.is(r.sha256, createHash('sha256').update(data).digest('hex'));
  t.is(await f.server.exited, 0);
  t.truthy(f.server.lines.find((l) => l.msg === 'stopped'));
});
