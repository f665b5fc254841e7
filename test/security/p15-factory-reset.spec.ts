/**
 * P15 (issue 19, ETSI EN 303 645 5.11): `peerlink-agent reset-password` on the device restores the
 * label password and drops every pairing, while the agent runs. Afterwards the label password
 * works again; the password the owner had set and every pairing are refused (ACCESS_REVOKED), and
 * a paired client's session in progress ends. The factory identity file is not touched.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { echoService, startFlow, tempDir } from '../helpers/flow.js';
import { agentCommand, echoOnce, liveSession, pairAs, passwordFile, peerlink, serverArgs } from '../helpers/owner.js';

const EXIT_ACCESS_REVOKED = 25;

test('factory reset: label password back, owner password and pairings refused, sessions ended, identity file unchanged', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const identityBefore = await readFile(flow.setup.identityFile);
  const owner = await tempDir(t, 'peerlink-owner-');
  t.is((await pairAs(flow, owner, 'owner')).code, 0);
  const newFile = await passwordFile(owner, 'new-password', 'Sunny-Harbor-Violet-Ledger-9437');
  const set = await peerlink([
    'device',
    'set-password',
    flow.setup.equipmentId,
    '--new-password-file',
    newFile,
    '--keep-pairings',
    '--pairing-dir',
    owner,
    ...serverArgs(flow),
  ]);
  t.is(set.code, 0, set.stderr);
  t.is(
    (await echoOnce(flow, { passwordFile: flow.setup.passwordFile })).code,
    EXIT_ACCESS_REVOKED,
    'before the reset the label is refused',
  );
  const session = await liveSession(t, flow, { pairingDir: owner });
  t.is(await session.echo('x'), 'x');

  const r = await agentCommand(flow, ['reset-password']);
  t.is(r.code, 0, r.stderr);
  await Promise.race([session.closed, new Promise((r2) => setTimeout(r2, 5000))]);
  t.true(session.isClosed(), "the paired client's session ended at the reset");
  t.is((await echoOnce(flow, { passwordFile: flow.setup.passwordFile })).code, 0, 'the label password works again');
  t.is((await echoOnce(flow, { passwordFile: newFile })).code, EXIT_ACCESS_REVOKED, 'the password the owner set is refused');
  t.is((await echoOnce(flow, { pairingDir: owner })).code, EXIT_ACCESS_REVOKED, 'the pairing is refused');
  const list = await agentCommand(flow, ['clients', '--json']);
  t.deepEqual(JSON.parse(list.stdout), []);
  t.deepEqual(await readFile(flow.setup.identityFile), identityBefore, 'the factory identity file is unchanged');
});
