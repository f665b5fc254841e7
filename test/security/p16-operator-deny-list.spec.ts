/**
 * P16: the operator's deny list on a single node (issue 19): `peerlink-server deny add` writes the
 * `[deny] file`, which the running node re-reads within a second. Requests for the device get
 * DEVICE_DENIED (exit 26), not "unknown device"; the device's registrations get no answer;
 * `deny remove` restores service. A deny file with a bad line is refused at start-up, naming it.
 */
import test from 'ava';
import { join } from 'node:path';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow, tempDir } from '../helpers/flow.js';
import { httpGet, sample } from '../helpers/multi-node.js';
import { runNode } from '../helpers/run-process.js';
import { waitUntilAsync } from '../helpers/deny.js';

const EXIT_DEVICE_DENIED = 26;

test('deny add / remove through the file: enforced by the running node within seconds', async (t) => {
  const echo = await echoService(t);
  const metrics = await freePort();
  const flow = await startFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}` },
    serverExtra: `[deny]\nfile = "deny.txt"\n[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metrics}`,
  });
  const connect = () => runNode(PROGRAMS.client, flow.clientArgs('echo', ['--stdio']));
  t.is((await connect()).code, 0);
  const add = await runNode(PROGRAMS.server, ['deny', 'add', flow.setup.equipmentId, '--config', flow.setup.serverConfig]);
  t.is(add.code, 0, add.stderr);
  await waitUntilAsync(
    async () => sample((await httpGet(metrics, '/metrics')).body, /^peerlink_denied_devices\{/) === 1,
    'the node to read the file',
    5_000,
  );
  const r = await connect();
  t.is(r.code, EXIT_DEVICE_DENIED, r.stderr);
  await waitUntilAsync(
    async () => (sample((await httpGet(metrics, '/metrics')).body, /^peerlink_registrations_total\{.*outcome="denied"/) ?? 0) >= 1,
    'a registration to be dropped unanswered',
    40_000,
  );
  t.is((await runNode(PROGRAMS.server, ['deny', 'remove', flow.setup.equipmentId, '--config', flow.setup.serverConfig])).code, 0);
  await waitUntilAsync(
    async () => sample((await httpGet(metrics, '/metrics')).body, /^peerlink_denied_devices\{/) === 0,
    'the node to re-read the file',
    5_000,
  );
  t.is((await connect()).code, 0, 'served again');
});

test('a deny file with a bad line is refused, naming file and line (at start-up the server stops; later the node keeps its last good list)', async (t) => {
  const dir = await tempDir(t, 'peerlink-deny-');
  const file = join(dir, 'deny.txt');
  const { parseDenyFile } = await import('../../agent/server/deny-list.js');
  const err = t.throws(() => parseDenyFile('GOOD-ID\nnot an id!\n', file));
  t.regex(err.message, /deny\.txt:2: expected an equipment ID/);
});
