/**
 * Fault: a clock that is wrong. The device's clock an hour ahead or behind, the server's five
 * minutes ahead or behind (PEERLINK_CLOCK_OFFSET_MS shifts a program's default clock: see
 * agent/common/clock.ts). Registration, request freshness and the replay window must cope: the agent
 * registers (it adopts the server's time from the first answer) and a client with the right time
 * connects. Time to the first registration is printed for docs/faults.md.
 */
import test from 'ava';
import { createLoopbackSetup, connectArgs } from '../../scripts/lib/loopback-setup.js';
import { startProgram } from '../../scripts/lib/program.js';
import { echoService, tempDir } from '../helpers/flow.js';
import { figure, runClient } from '../helpers/faults.js';

const HOUR_MS = 3_600_000;
const FIVE_MIN_MS = 300_000;
const offsetEnv = (ms: number): NodeJS.ProcessEnv => ({ ...process.env, PEERLINK_CLOCK_OFFSET_MS: String(ms) });

for (const [who, offsetMs, label] of [
  ['agent', HOUR_MS, 'device clock +1 h'],
  ['agent', -HOUR_MS, 'device clock -1 h'],
  ['server', FIVE_MIN_MS, 'server clock +5 min'],
  ['server', -FIVE_MIN_MS, 'server clock -5 min'],
] as const) {
  test(`${label}: the agent registers and a client connects`, async (t) => {
    t.timeout(60_000);
    const echo = await echoService(t);
    const dir = await tempDir(t, 'peerlink-clock-');
    const setup = await createLoopbackSetup({ dir, services: { echo: `127.0.0.1:${echo.port}` } });
    const server = startProgram('server', ['--config', setup.serverConfig], who === 'server' ? { env: offsetEnv(offsetMs) } : {});
    t.teardown(() => server.stop().then(() => undefined));
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    const began = performance.now();
    const agent = startProgram('agent', ['--config', setup.agentConfig], who === 'agent' ? { env: offsetEnv(offsetMs) } : {});
    t.teardown(() => agent.stop().then(() => undefined));
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'), 30_000);
    figure(t, `${label}: agent start to registered`, `${Math.round(performance.now() - began)} ms`);
    const line = `${label}\n`;
    const run = await runClient([...connectArgs(setup, 'echo'), '--stdio'], line).done;
    figure(t, `${label}: client connect`, `exit ${run.code} in ${run.ms} ms${run.code === 0 ? '' : `: ${run.said}`}`);
    t.is(run.code, 0, run.said);
    t.is(run.stdout, line);
  });
}
