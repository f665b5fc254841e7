/**
 * Fault: one of two server nodes sharing a real redis-server is killed with SIGKILL — the node the
 * device registers with — and restarted. A client asking the other node while it is down gets a clear
 * error (no hang); once the node is back the device is registered there again within one interval,
 * and a request through the other node connects. The figures are printed for docs/faults.md.
 */
import { startProgram } from '../../scripts/lib/program.js';
import { startRedis } from '../../scripts/lib/redis-process.js';
import { echoService } from '../helpers/flow.js';
import { httpGet, sample, startTwoNodes } from '../helpers/multi-node.js';
import { redisTest } from '../helpers/redis-test.js';
import { figure, killHard, pause, resume, runClient, sleep } from '../helpers/faults.js';

const INTERVAL_MS = 15_000;
const IN_FLIGHT_SETTLE_MS = 1_000;

redisTest(
  "the device's node SIGKILLed and restarted: the other node answers clearly meanwhile, the device is back within one interval",
  async (t) => {
    t.timeout(120_000);
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    const echo = await echoService(t);
    const f = await startTwoNodes(t, { redis, services: { echo: `127.0.0.1:${echo.port}` } });
    const line = 'across the nodes\n';
    const viaNode2 = () => runClient(f.clientArgs(1, 'echo', ['--stdio']), line, 90_000);
    const ok = await viaNode2().done;
    t.is(ok.code, 0, `before the fault: ${ok.said}`);

    // In flight through node 2 while the device (at node 1) is paused; then node 1 dies.
    pause(f.agent);
    t.teardown(() => resume(f.agent));
    const inFlight = viaNode2();
    t.teardown(inFlight.kill);
    await sleep(IN_FLIGHT_SETTLE_MS);
    const killedAt = performance.now();
    await killHard(f.nodes[0]);
    resume(f.agent);
    const cut = await inFlight.done;
    t.not(cut.code, null, 'the client must not hang');
    figure(
      t,
      'node 1 of 2 SIGKILL: request in flight at node 2 ends after',
      `${Math.round(performance.now() - killedAt)} ms, exit ${cut.code}: ${cut.said}`,
    );

    const during = await viaNode2().done;
    t.not(during.code, null);
    figure(t, 'node 1 of 2 SIGKILL: a request at node 2 while node 1 is down', `${during.ms} ms, exit ${during.code}: ${during.said}`);

    const node1 = startProgram('server', ['--config', f.setup.serverConfig]);
    t.teardown(() => node1.stop().then(() => undefined));
    await node1.waitFor((l) => l.msg === 'rendezvous server listening', 20_000);
    const upAt = performance.now();
    // The mapping is the one Redis holds, so the node logs no move: its own list (a metric) tells.
    const localDevices = async (): Promise<number> =>
      sample((await httpGet(f.metricsPorts[0], '/metrics')).body, /^peerlink_registered_devices/) ?? 0;
    while ((await localDevices()) < 1) {
      if (performance.now() - upAt > INTERVAL_MS + 5_000) break;
      await sleep(100);
    }
    const backMs = Math.round(performance.now() - upAt);
    t.true(backMs <= INTERVAL_MS, `registered again ${backMs} ms after the restart`);
    figure(t, 'node 1 of 2 SIGKILL: device registered at node 1 again after its restart', `${backMs} ms (interval ${INTERVAL_MS} ms)`);

    const next = await viaNode2().done;
    t.is(next.code, 0, `after recovery: ${next.said}`);
    t.is(next.stdout, line);
  },
);
