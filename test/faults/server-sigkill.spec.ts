/**
 * Fault: the rendezvous server is killed with SIGKILL and restarted (one node, in-memory registry).
 * While it is down, a client request in flight ends at once with a clear error (not a hang); once it
 * is back, the device is in its list again within one registration interval (the agent needs no
 * restart), and the next request connects. The figures are printed for docs/faults.md.
 */
import test from 'ava';
import { startProgram, type LogLine } from '../../scripts/lib/program.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { figure, killHard, pause, resume, runClient, sleep } from '../helpers/faults.js';

const INTERVAL_MS = 15_000;
/** The request must be waiting at the server (the device paused) before the kill. */
const IN_FLIGHT_SETTLE_MS = 1_000;
const registeredAt =
  (id: string) =>
  (l: LogLine): boolean =>
    l.msg === 'S202 device registered' && l.equipmentId === id;

test('server SIGKILLed and restarted: the request in flight fails clearly, the device is back within one interval, the next request connects', async (t) => {
  t.timeout(90_000);
  const echo = await echoService(t);
  const f = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, registerIntervalMs: INTERVAL_MS });
  const line = 'hello through the tunnel\n';
  const ok = await runClient(f.clientArgs('echo', ['--stdio']), line).done;
  t.is(ok.code, 0, `before the fault: ${ok.said}`);

  // A request in flight: the device is paused, so the server is waiting for it when it dies.
  pause(f.agent);
  t.teardown(() => resume(f.agent));
  const inFlight = runClient(f.clientArgs('echo', ['--stdio']), line);
  t.teardown(inFlight.kill);
  await sleep(IN_FLIGHT_SETTLE_MS);
  const killedAt = performance.now();
  await killHard(f.server);
  const cut = await inFlight.done;
  const cutMs = Math.round(performance.now() - killedAt);
  resume(f.agent);
  t.not(cut.code, 0);
  t.not(cut.code, null, 'the client must not hang');
  t.is(cut.code, 18, `a server gone is SERVER_UNREACHABLE (exit 18): ${cut.said}`);
  figure(t, 'one node SIGKILL: request in flight ends after', `${cutMs} ms, exit ${cut.code}: ${cut.said}`);

  // Restart on the same settings and ports; the agent keeps running.
  const server = startProgram('server', ['--config', f.setup.serverConfig]);
  t.teardown(() => server.stop().then(() => undefined));
  await server.waitFor((l) => l.msg === 'rendezvous server listening', 20_000);
  const upAt = performance.now();
  const early = await runClient(f.clientArgs('echo', ['--stdio']), line).done;
  figure(t, 'one node SIGKILL: a request before the device registered again', `exit ${early.code}: ${early.said}`);
  await server.waitFor(registeredAt(f.setup.equipmentId), INTERVAL_MS + 5_000);
  const backMs = Math.round(performance.now() - upAt);
  t.true(backMs <= INTERVAL_MS, `the device registered again ${backMs} ms after the restart (interval ${INTERVAL_MS} ms)`);
  figure(t, 'one node SIGKILL: device in the list again after restart', `${backMs} ms (interval ${INTERVAL_MS} ms)`);

  const next = await runClient(f.clientArgs('echo', ['--stdio']), line).done;
  t.is(next.code, 0, `after recovery: ${next.said}`);
  t.is(next.stdout, line);
});
