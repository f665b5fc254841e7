/**
 * P3: the device dials out only for an authorised request: valid tag under its access key,
 * fresh, never seen before, for a service in its allow-list, to an address its dial policy
 * allows. Set-up: a real in-process server and agent, a fake client that opens TLS to the
 * server and sends a CONNECT_REQUEST with a request it sealed itself, and a plain TCP listener
 * standing in for the client's accept port, which counts the device's connection attempts.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { ErrorCodes } from '../../agent/common/errors.js';
import { deriveRegistrationKey, deriveRequestTagKey } from '../../agent/protocol/keys.js';
import { Status, STATUS_ERROR, type StatusValue } from '../../agent/protocol/status.js';
import { acceptor, EQUIPMENT_ID, request, world, type Acceptor, type RequestSpec, type World } from '../helpers/fake-client.js';
import { Scope, sleep, waitUntil } from '../helpers/harness.js';

/** How long to keep watching for a dial after a refusal. The device would dial right after its verdict. */
const QUIET_MS = 300;

const scope = new Scope();
let worlds: Promise<{ open: World; noLoopback: World }>;

test.before(() => {
  // Both worlds start in parallel; each test awaits the one it needs.
  worlds = (async () => {
    const [open, noLoopback] = await Promise.all([world(scope), world(scope, { allowLoopback: false })]);
    return { open, noLoopback };
  })();
  worlds.catch(() => undefined);
});
test.after.always(() => scope.run());

/** Assert the request is refused with `status` and that no dial follows. */
async function assertRefusedWithoutDial(
  t: ExecutionContext,
  w: World,
  acc: Acceptor,
  build: Buffer | RequestSpec,
  status: StatusValue,
  what: string,
): Promise<void> {
  const before = acc.dials();
  const r = await request(w, acc, build);
  t.is(r.status, status, `${what}: status`);
  await sleep(QUIET_MS);
  t.is(acc.dials(), before, `${what}: the device must not dial`);
}

test('P3 positive control: a valid request produces exactly one connection to the accept port', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const r = await request(w, acc, {});
  t.is(r.status, Status.OK);
  await waitUntil(() => acc.dials() === 1, 'the device to dial', 3000);
  await sleep(QUIET_MS);
  t.is(acc.dials(), 1, 'exactly one connection');
});

test('P3: a request sealed with a wrong key is refused (AUTH_FAILED) and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const candidates: [string, Buffer][] = [
    ['a random access key', deriveRequestTagKey(randomBytes(32))],
    // What the server could try: all it knows is the master key and the registration key.
    ['the registration key as access key', deriveRequestTagKey(deriveRegistrationKey(w.masterKey, EQUIPMENT_ID))],
    ['the registration key as tag key', deriveRegistrationKey(w.masterKey, EQUIPMENT_ID)],
    ['the master key as tag key', w.masterKey],
    ['the access key itself as tag key (wrong derivation)', w.identity.accessKey],
  ];
  for (const [what, tagKey] of candidates) await assertRefusedWithoutDial(t, w, acc, { tagKey }, Status.AUTH_FAILED, what);
  t.is(STATUS_ERROR[Status.AUTH_FAILED], ErrorCodes.AUTH_FAILED);
});

test('P3: a stale request (60 s old) is refused (REQUEST_EXPIRED) and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  await assertRefusedWithoutDial(t, w, acc, { ageMs: 60_000 }, Status.REQUEST_EXPIRED, '60 s old');
  await assertRefusedWithoutDial(t, w, acc, { ageMs: -60_000 }, Status.REQUEST_EXPIRED, '60 s in the future');
});

test('P3: a replayed request (same sealed bytes) is refused (REQUEST_REPLAYED) and produces no second dial', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const first = await request(w, acc, {});
  t.is(first.status, Status.OK);
  await waitUntil(() => acc.dials() === 1, 'the first dial', 3000);
  await assertRefusedWithoutDial(t, w, acc, first.sealed, Status.REQUEST_REPLAYED, 'replay of the served request');
  await assertRefusedWithoutDial(t, w, acc, first.sealed, Status.REQUEST_REPLAYED, 'second replay');
  t.is(acc.dials(), 1);
});

test('P3: a request for a service not in the allow-list is refused (SERVICE_REFUSED) and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  for (const service of ['ssh', 'admin', 'svc2']) {
    await assertRefusedWithoutDial(t, w, acc, { service }, Status.SERVICE_REFUSED, `service ${service}`);
  }
});

test('P3: a request sealed for another device is refused and no dial happens', async (t) => {
  const w = (await worlds).open;
  const acc = await acceptor(t);
  const r = await request(w, acc, { equipmentId: 'P3-OTHER-DEVICE' });
  t.not(r.status, Status.OK);
  await sleep(QUIET_MS);
  t.is(acc.dials(), 0);
});

test('P3: with dial.allow_loopback = false a valid request from 127.0.0.1 is refused (DIAL_REFUSED), no dial', async (t) => {
  const w = (await worlds).noLoopback;
  const acc = await acceptor(t);
  await assertRefusedWithoutDial(t, w, acc, {}, Status.DIAL_REFUSED, 'loopback client');
  t.is(STATUS_ERROR[Status.DIAL_REFUSED], ErrorCodes.DIAL_REFUSED);
});
