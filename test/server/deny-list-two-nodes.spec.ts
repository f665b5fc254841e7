/**
 * The operator's deny list across a fleet (issue 19): `peerlink-server deny add` at one node puts
 * the device on the shared list in Redis; both nodes enforce it within seconds. Requests for the
 * device get DEVICE_DENIED (exit 26) at either node; its registrations get no answer (counted as
 * denied); the metric shows the list's size. `deny remove` lets it back in.
 */
import { redisTest } from '../helpers/redis-test.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { startRedis } from '../../scripts/lib/redis-process.js';
import { echoService } from '../helpers/flow.js';
import { httpGet, sample, startTwoNodes } from '../helpers/multi-node.js';
import { runNode } from '../helpers/run-process.js';
import { waitUntilAsync } from '../helpers/deny.js';

const EXIT_DEVICE_DENIED = 26;
/** "Within seconds": the nodes poll the shared list every second. */
const ENFORCED_WITHIN_MS = 5_000;

redisTest('deny add at node 1 is enforced by both nodes within seconds; deny remove restores service', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const echo = await echoService(t);
  const f = await startTwoNodes(t, { redis, services: { echo: `127.0.0.1:${echo.port}` } });
  const id = f.setup.equipmentId;
  const connectVia = (n: 0 | 1) => runNode(PROGRAMS.client, f.clientArgs(n, 'echo', ['--stdio']));
  t.is((await connectVia(1)).code, 0, 'before: served through the other node');

  const t0 = Date.now();
  const add = await runNode(PROGRAMS.server, ['deny', 'add', id, '--config', f.setup.serverConfig]);
  t.is(add.code, 0, add.stderr);
  t.regex(add.stdout, /denied/);
  for (const port of f.metricsPorts) {
    await waitUntilAsync(async () => sample((await httpGet(port, '/metrics')).body, /^peerlink_denied_devices\{/) === 1, 'the node to enforce the list', ENFORCED_WITHIN_MS);
  }
  t.log(`both nodes enforce the new entry ${Date.now() - t0} ms after deny add`);

  for (const n of [0, 1] as const) {
    const r = await connectVia(n);
    t.is(r.code, EXIT_DEVICE_DENIED, `node ${n + 1}: ${r.stderr}`);
    t.regex(r.stderr, /deny list/);
  }
  const m0 = (await httpGet(f.metricsPorts[0], '/metrics')).body;
  t.true((sample(m0, /^peerlink_connection_requests_total\{.*outcome="device_denied"/) ?? 0) >= 1);
  // The device keeps registering with node 1 and gets no answer.
  await waitUntilAsync(async () => (sample((await httpGet(f.metricsPorts[0], '/metrics')).body, /^peerlink_registrations_total\{.*outcome="denied"/) ?? 0) >= 1, 'a registration of the denied device to be dropped', 40_000);

  const list = await runNode(PROGRAMS.server, ['deny', 'list', '--config', f.setup.serverConfig]);
  t.is(list.stdout.trim(), id);
  const rm = await runNode(PROGRAMS.server, ['deny', 'remove', id, '--config', f.setup.serverConfig]);
  t.is(rm.code, 0, rm.stderr);
  for (const port of f.metricsPorts) {
    await waitUntilAsync(async () => sample((await httpGet(port, '/metrics')).body, /^peerlink_denied_devices\{/) === 0, 'the node to drop the entry', ENFORCED_WITHIN_MS);
  }
  const after = await connectVia(1);
  t.is(after.code, 0, `after deny remove: ${after.stderr}`);
});
