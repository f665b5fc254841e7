/**
 * P15 (issue 19): the owner takes one client's access away without touching the others. A revoked
 * client's session in progress ends, and its next request is refused with a clear code
 * (PEERLINK_ERR_ACCESS_REVOKED, exit 25), not "wrong password"; the other pairing keeps working.
 * Revocation from a paired client (`peerlink device revoke`) and on the device
 * (`peerlink-agent revoke`, which the running agent picks up from the state file).
 */
import test from 'ava';
import { echoService, startFlow, tempDir, type Flow } from '../helpers/flow.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { agentCommand, echoOnce, liveSession, pairAs, peerlink, serverArgs } from '../helpers/owner.js';

const EXIT_ACCESS_REVOKED = 25;
/** How long a revoked session may outlive the revocation: the agent's poll of its state file is 1 s. */
const SESSION_END_MS = 5_000;

async function twoPairings(
  t: Parameters<typeof startFlow>[0],
  directDialOnly = false,
): Promise<{ flow: Flow; phone: string; laptop: string }> {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, directDialOnly });
  const phone = await tempDir(t, 'peerlink-phone-');
  const laptop = await tempDir(t, 'peerlink-laptop-');
  for (const [dir, name] of [
    [phone, 'phone'],
    [laptop, 'laptop'],
  ] as const) {
    const r = await pairAs(flow, dir, name);
    if (r.code !== 0) throw new Error(r.stderr);
  }
  return { flow, phone, laptop };
}

async function within(p: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

test("revoked from another paired client: the phone's session ends, its next request gets ACCESS_REVOKED, the laptop still connects", async (t) => {
  const { flow, phone, laptop } = await twoPairings(t);
  const session = await liveSession(t, flow, { pairingDir: phone });
  t.is(await session.echo('before'), 'before', 'the phone has a working session');

  const r = await peerlink(['device', 'revoke', flow.setup.equipmentId, 'phone', '--pairing-dir', laptop, ...serverArgs(flow)]);
  t.is(r.code, 0, r.stderr);
  const revoked = Date.now();
  t.true(await within(session.closed, SESSION_END_MS), "the revoked phone's session in progress was ended");
  t.log(`session ended ${Date.now() - revoked} ms after the revoke command returned`);

  const again = await echoOnce(flow, { pairingDir: phone });
  t.is(again.code, EXIT_ACCESS_REVOKED, again.stderr);
  t.regex(again.stderr, /PEERLINK_ERR_ACCESS_REVOKED|taken this client's access away|took this client's access away/);
  const other = await echoOnce(flow, { pairingDir: laptop });
  t.is(other.code, 0, other.stderr);
  const list = await agentCommand(flow, ['clients', '--json']);
  t.deepEqual(
    (JSON.parse(list.stdout) as { name: string }[]).map((c) => c.name),
    ['laptop'],
  );
});

test('revoked on the device by a technician (peerlink-agent revoke): the running agent ends the session and refuses the phone', async (t) => {
  const { flow, phone, laptop } = await twoPairings(t);
  const session = await liveSession(t, flow, { pairingDir: phone });
  t.is(await session.echo('x'), 'x');
  const r = await agentCommand(flow, ['revoke', 'phone']);
  t.is(r.code, 0, r.stderr);
  t.true(await within(session.closed, SESSION_END_MS), 'the running agent saw the state file change and ended the session');
  t.is((await echoOnce(flow, { pairingDir: phone })).code, EXIT_ACCESS_REVOKED);
  t.is((await echoOnce(flow, { pairingDir: laptop })).code, 0);
});

test('revoked while its session runs through the relay: the relayed session ends too', async (t) => {
  // The device cannot dial the advertised port (closed) and tries no other direct path: the relay carries it.
  const { flow, phone, laptop } = await twoPairings(t, true);
  const session = await liveSession(t, flow, { pairingDir: phone }, ['--advertise-port', String(await freePort())]);
  t.is(await session.echo('relayed'), 'relayed');
  t.truthy(
    session.client.stderr.find((l) => /relayed via server/.test(l)),
    'the session is relayed',
  );
  const r = await peerlink(['device', 'revoke', flow.setup.equipmentId, 'phone', '--pairing-dir', laptop, ...serverArgs(flow)]);
  t.is(r.code, 0, r.stderr);
  t.true(await within(session.closed, SESSION_END_MS), 'the relayed session in progress was ended');
});
