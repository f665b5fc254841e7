/**
 * P9: strangers who know a device's ID cannot lock its owner out, and make the device do no TLS
 * work. The device checks each notification's wake proof (made with the password) before it
 * connects, and tells the server (REFUSE), which ends the request at once; the per-device limit
 * counts only requests the device accepted; a source whose requests fail authentication runs into
 * its own limit. Sources are distinct loopback addresses (127.0.0.x), as distinct to the server as
 * hosts on the Internet; the server, the agent and its reverse port are real.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { connect } from '../../agent/client/client.js';
import { Status, STATUS_ERROR } from '../../agent/protocol/status.js';
import { strangerWake } from '../helpers/wake.js';
import { acceptor, EQUIPMENT_ID, request, SERVICE, world, type Acceptor, type World } from '../helpers/fake-client.js';
import { Scope, sleep, waitUntil } from '../helpers/harness.js';

const scope = new Scope();
test.after.always(() => scope.run());

const STRANGER_SOURCES = 50;
const FLOOD_PER_SECOND = 60;
const FLOOD_MS = 12_000;
const FLOOD_TICK_MS = 5;
const OWNER_EVERY_MS = 400;
const OWNER = '127.0.0.2';
const LOOPBACK = '127.0.0.1';
const stranger = (i: number): string => `127.0.0.${10 + (i % STRANGER_SOURCES)}`;

/** A stranger's request: a made-up password, so a wake proof that cannot verify. */
const flood = (w: World, acc: Acceptor, i: number) =>
  request(w, acc, { tagKey: randomBytes(32), wake: strangerWake() }, stranger(i)).then(
    (r) => r.status,
    () => -1,
  );

test.serial(
  'P9: while 50 sources flood the device ID without the password, the owner gets in >= 95% of the time and the device opens TLS only for the owner',
  async (t) => {
    // The server's default limits, as deployed.
    const w = await world(scope, { limits: {} });
    const acc = await acceptor(t);
    const sessionsBefore = w.agent.counters.get('sessions');
    const strangers: Promise<number>[] = [];
    const owner: number[] = [];
    const started = Date.now();
    let i = 0;
    // Paced by the clock, not by sleeps: a busy machine delays the loop, not the rate.
    const flooding = (async () => {
      while (Date.now() - started < FLOOD_MS) {
        const due = Math.floor(((Date.now() - started) / 1000) * FLOOD_PER_SECOND);
        while (i < due) strangers.push(flood(w, acc, i++));
        await sleep(FLOOD_TICK_MS);
      }
    })();
    // The owner: the real client library, a whole tunnel each time (echo through it), then closed.
    while (Date.now() - started < FLOOD_MS) {
      owner.push(await ownerConnects(w));
      await sleep(OWNER_EVERY_MS);
    }
    await flooding;
    const strangerStatuses = await Promise.all(strangers);
    const ok = owner.filter((s) => s === Status.OK).length;
    const rate = strangers.length / (FLOOD_MS / 1000);
    t.log(
      `owner: ${ok} of ${owner.length} connected (statuses ${JSON.stringify(countBy(owner))}); strangers: ${strangers.length} requests (${rate.toFixed(0)}/s from ${STRANGER_SOURCES} sources), statuses ${JSON.stringify(countBy(strangerStatuses))}`,
    );
    t.log(
      `agent ${JSON.stringify(w.agent.counters.snapshot())} registrar ${JSON.stringify(w.agent.registrar.counters.snapshot())} server udp ${JSON.stringify(w.server.registration.counters.snapshot())} broker ${JSON.stringify(w.server.broker.counters.snapshot())}`,
    );
    t.true(rate >= 50, `the flood ran at ${rate.toFixed(1)} requests/s`);
    t.true(ok / owner.length >= 0.95, `the owner got in ${ok} of ${owner.length} times`);
    t.false(strangerStatuses.includes(Status.OK), 'no stranger got in');
    // The device's TLS work: one session per notification it accepted, none for a stranger's.
    await waitUntil(() => w.agent.counters.get('sessions') - sessionsBefore >= owner.length, 'the owner sessions counted');
    t.is(w.agent.counters.get('sessions') - sessionsBefore, owner.length, 'the device connected to the server for the owner requests only');
    t.true(w.agent.counters.get('wakeRefused') > 0, 'strangers were refused by their wake proof');
    t.is(acc.dials(), 0, 'and dialled no stranger');
  },
);

/** One connection of the owner's through the client library: OK once bytes came back through the tunnel. */
async function ownerConnects(w: World): Promise<number> {
  try {
    const tunnel = await connect(
      {
        server: { host: LOOPBACK, port: w.tlsPort },
        serverName: 'localhost',
        caPem: w.caPem,
        equipmentId: EQUIPMENT_ID,
        accessKey: w.identity.accessKey,
        service: SERVICE,
        accept: { host: LOOPBACK, port: 0 },
      },
      AbortSignal.timeout(15_000),
    );
    const payload = randomBytes(16).toString('hex');
    const echoed = await new Promise<string>((resolve) => {
      let got = '';
      tunnel.stream.setEncoding('utf8');
      tunnel.stream.on('data', (d: string) => {
        got += d;
        if (got.length >= payload.length) resolve(got);
      });
      tunnel.stream.on('close', () => resolve(got));
      tunnel.stream.write(payload);
    });
    tunnel.stream.destroy();
    return echoed === payload ? Status.OK : Status.INTERNAL;
  } catch (err) {
    return (err as { code?: string }).code === undefined ? -1 : statusOf((err as { code: string }).code);
  }
}

function statusOf(code: string): number {
  const found = Object.entries(STATUS_ERROR).find(([, c]) => c === code);
  return found ? Number(found[0]) : -1;
}

test.serial('P9: the per-device limit counts only requests the device accepted; wrong passwords count against their source', async (t) => {
  const w = await world(scope, {
    limits: { requestsPerDevice: { perSecond: 0.001, burst: 2 }, authFailuresPerSource: { perSecond: 0.001, burst: 3 } },
  });
  const acc = await acceptor(t);
  const wrong = () => ({ tagKey: randomBytes(32) });
  // Strangers from one address: three wrong passwords, then that address is refused before any wake.
  const fromStranger = [];
  for (let k = 0; k < 5; k++) fromStranger.push((await request(w, acc, wrong(), '127.0.0.20')).status);
  t.deepEqual(fromStranger, [Status.AUTH_FAILED, Status.AUTH_FAILED, Status.AUTH_FAILED, Status.RATE_LIMITED, Status.RATE_LIMITED]);
  t.is(w.agent.counters.get('wakeRefused'), 3, 'the refused address did not even wake the device');
  // The device's own limit is untouched by them: the owner's two requests go through, the third is the limit.
  const fromOwner = [];
  for (let k = 0; k < 3; k++) fromOwner.push((await request(w, acc, {}, OWNER)).status);
  t.deepEqual(fromOwner, [Status.OK, Status.OK, Status.RATE_LIMITED]);
  t.is(w.server.broker.counters.get('refusedWake'), 3);
  t.is(w.server.broker.counters.get('rateLimitedAuthFailures'), 2);
});

test.serial('P9: a replayed or stale wake proof does not make the device connect either', async (t) => {
  const w = await world(scope);
  const acc = await acceptor(t);
  const sessions = w.agent.counters.get('sessions');
  const first = await request(w, acc, {});
  t.is(first.status, Status.OK);
  // The same request and wake again (what an on-path observer of the notification could send).
  t.is((await request(w, acc, first.sealed)).status, Status.REQUEST_REPLAYED);
  t.is((await request(w, acc, { ageMs: 60_000 })).status, Status.REQUEST_EXPIRED);
  t.is(w.agent.counters.get('sessions') - sessions, 1, 'one TLS session: the genuine request');
});

function countBy(xs: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}
