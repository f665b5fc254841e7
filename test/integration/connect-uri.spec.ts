/**
 * The label's QR code holds a peerlink:// URI (ID, password, server). The client takes it in place
 * of the equipment ID, --password-file and --server, and connects; a malformed URI is a usage error
 * that names what was wrong.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { formatConnectUri } from '../../agent/protocol/connect-uri.js';
import { EXIT_USAGE } from '../../agent/cli/exit-codes.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { runNode, runNodeStdio } from '../helpers/run-process.js';

test('connect with the label URI: ID, password and server come from it, and data flows', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const uri = formatConnectUri({
    equipmentId: flow.setup.equipmentId,
    password: flow.setup.password,
    server: `127.0.0.1:${flow.setup.tlsPort}`,
  });
  const data = randomBytes(64 * 1024);
  const args = ['connect', uri, '--ca', flow.setup.caFile, '--server-name', 'localhost', '--service', 'echo', '--stdio'];
  const r = await runNodeStdio(PROGRAMS.client, args, data, (kill) => t.teardown(kill));
  t.is(r.code, 0, r.stderr);
  t.is(r.sha256, createHash('sha256').update(data).digest('hex'));
});

test('a malformed URI is a usage error naming the problem', async (t) => {
  const r = await runNode(PROGRAMS.client, [
    'connect',
    'peerlink://connect?v=1&id=bad%20id&pw=X',
    '--ca',
    '/dev/null',
    '--service',
    'echo',
    '--stdio',
  ]);
  t.is(r.code, EXIT_USAGE);
  t.regex(r.stderr, /connect URI: id/);
});
