/**
 * P15 (issue 19, ETSI EN 303 645 5.1): the owner changes the password from a paired client while
 * a session made with the old (label) password is running. That session ends, the old password is
 * refused with ACCESS_REVOKED, the new one works. The owner chooses what happens to the other
 * pairings: --drop-pairings takes them away (ACCESS_REVOKED), --keep-pairings keeps them working.
 * The device stores only the new password's access key, never the password.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { echoService, startFlow, tempDir } from '../helpers/flow.js';
import { echoOnce, liveSession, pairAs, passwordFile, peerlink, serverArgs } from '../helpers/owner.js';

const EXIT_ACCESS_REVOKED = 25;
const NEW_PASSWORD = 'k7Qp-Zr3x-W9mT-b2Lc-Y8vN';

for (const keep of [false, true]) {
  test(`password changed while a label-password session runs (${keep ? '--keep-pairings' : '--drop-pairings'})`, async (t) => {
    const echo = await echoService(t);
    const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
    const owner = await tempDir(t, 'peerlink-owner-');
    const phone = await tempDir(t, 'peerlink-phone-');
    t.is((await pairAs(flow, owner, 'owner')).code, 0);
    t.is((await pairAs(flow, phone, 'phone')).code, 0);
    const guest = await liveSession(t, flow, { passwordFile: flow.setup.passwordFile });
    t.is(await guest.echo('guest'), 'guest', 'a session made with the label password is running');

    const newFile = await passwordFile(owner, 'new-password', NEW_PASSWORD);
    const r = await peerlink([
      'device',
      'set-password',
      flow.setup.equipmentId,
      '--new-password-file',
      newFile,
      keep ? '--keep-pairings' : '--drop-pairings',
      '--pairing-dir',
      owner,
      ...serverArgs(flow),
    ]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, keep ? /0 pairing\(s\) dropped/ : /1 pairing\(s\) dropped/);

    await Promise.race([guest.closed, new Promise((r2) => setTimeout(r2, 5000))]);
    t.true(guest.isClosed(), 'the session made with the old password ended');
    const old = await echoOnce(flow, { passwordFile: flow.setup.passwordFile });
    t.is(old.code, EXIT_ACCESS_REVOKED, `the label password is refused with a clear code: ${old.stderr}`);
    t.is((await echoOnce(flow, { passwordFile: newFile })).code, 0, 'the new password works');
    t.is((await echoOnce(flow, { pairingDir: owner })).code, 0, 'the owner keeps its own pairing');
    t.is(
      (await echoOnce(flow, { pairingDir: phone })).code,
      keep ? 0 : EXIT_ACCESS_REVOKED,
      keep ? 'kept pairing works' : 'dropped pairing refused',
    );

    const state = await readFile(join(flow.setup.dir, 'state', 'owner-state.json'), 'utf8');
    t.false(state.includes(NEW_PASSWORD) || state.includes(NEW_PASSWORD.replace(/-/g, '')), 'the device stores no password');
  });
}

test('a weak new password is refused by the client before anything is sent (P11)', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const owner = await tempDir(t, 'peerlink-owner-');
  t.is((await pairAs(flow, owner, 'owner')).code, 0);
  const weak = await passwordFile(owner, 'weak', 'password1');
  const r = await peerlink([
    'device',
    'set-password',
    flow.setup.equipmentId,
    '--new-password-file',
    weak,
    '--keep-pairings',
    '--pairing-dir',
    owner,
    ...serverArgs(flow),
  ]);
  t.not(r.code, 0);
  t.regex(r.stderr, /PASSWORD_WEAK|password/i);
  t.is((await echoOnce(flow, { passwordFile: flow.setup.passwordFile })).code, 0, 'the label password still works');
});
