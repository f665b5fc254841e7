/**
 * The session pool (agent/session/session-pool.ts) with sessions standing in for the real ones:
 * streams opened while a session is being made share it (one connect), a dead session is
 * replaced, an idle one is closed after idleMs, a refused stream leaves the session up.
 */
import test from 'ava';
import { PassThrough, type Duplex } from 'node:stream';
import { ErrorCodes, PeerlinkError } from '../../agent/common/errors.js';
import { silentLogger } from '../../agent/common/logger.js';
import { StreamRefusedError } from '../../agent/protocol/session-streams.js';
import { Status } from '../../agent/protocol/status.js';
import type { ClientSession } from '../../agent/session/client-session.js';
import { createSessionPool } from '../../agent/session/session-pool.js';

interface Fake extends ClientSession {
  kill(): void;
  streams: Duplex[];
  closedHow: string | null;
}

function fakeSession(onIdle: () => void, refuse: ReadonlySet<string> = new Set()): Fake {
  let alive = true;
  let open = 0;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const streams: Duplex[] = [];
  const stream = (): Duplex => {
    if (!alive) throw new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, 'the session to the device has ended');
    const s = new PassThrough();
    open++;
    s.once('close', () => {
      if (--open === 0 && alive) onIdle();
    });
    streams.push(s);
    return s;
  };
  const f: Fake = {
    streams,
    closedHow: null,
    async open(service) {
      if (alive && refuse.has(service)) throw new StreamRefusedError(Status.SERVICE_REFUSED, service);
      return stream();
    },
    openEarly: () => stream(),
    active: () => open,
    alive: () => alive,
    closed,
    async close(how = 'graceful') {
      f.closedHow = how;
      f.kill();
    },
    kill() {
      alive = false;
      resolveClosed();
    },
  };
  return f;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('streams asked for while the session is being made share it: one connect', async (t) => {
  const made: Fake[] = [];
  const pool = createSessionPool<string>({
    idleMs: 60_000,
    logger: silentLogger(),
    connect: async (_signal, onIdle) => {
      await sleep(50);
      const s = fakeSession(onIdle);
      made.push(s);
      return { session: s, info: `session ${made.length}` };
    },
  });
  t.teardown(() => pool.stop());
  const got = await Promise.all(Array.from({ length: 10 }, () => pool.stream('echo')));
  t.is(made.length, 1);
  t.is(made[0]!.streams.length, 10);
  t.is(got.filter((g) => g.reused).length, 0, 'none of them found a session up');
  t.true((await pool.stream('echo')).reused);
  t.is(pool.counters.get('sessionsOpened'), 1);
  t.is(pool.counters.get('streamsOpened'), 11);
});

test('a dead session is replaced by the next stream; an idle one is closed after idleMs; a refusal leaves it up', async (t) => {
  const made: Fake[] = [];
  const pool = createSessionPool<null>({
    idleMs: 100,
    logger: silentLogger(),
    connect: async (_signal, onIdle) => {
      const s = fakeSession(onIdle, new Set(['secret']));
      made.push(s);
      return { session: s, info: null };
    },
  });
  t.teardown(() => pool.stop());
  const a = await pool.stream('echo');
  const refused = await t.throwsAsync(pool.stream('secret'));
  t.is((refused as PeerlinkError).code, ErrorCodes.SERVICE_REFUSED);
  t.true(pool.live(), 'the refusal left the session up');
  t.is(pool.counters.get('streamsRefused'), 1);

  made[0]!.kill(); // the channel broke
  await sleep(0);
  const b = await pool.stream('echo');
  t.false(b.reused);
  t.is(made.length, 2);
  t.is(pool.counters.get('sessionsLost'), 1);

  // Idle: no stream open for idleMs closes the session; a stream opened before that keeps it.
  a.stream.destroy();
  b.stream.destroy();
  await sleep(50);
  const c = await pool.stream('echo');
  t.true(c.reused);
  c.stream.destroy();
  await sleep(250);
  t.is(made[1]!.closedHow, 'graceful');
  t.false(pool.live());
  t.is(pool.counters.get('idleClosed'), 1);
  t.false((await pool.stream('echo')).reused);
  t.is(made.length, 3);
});

test('stop() closes the live session and refuses new streams', async (t) => {
  let s: Fake | null = null;
  const pool = createSessionPool<null>({
    idleMs: 60_000,
    logger: silentLogger(),
    connect: async (_signal, onIdle) => ({ session: (s = fakeSession(onIdle)), info: null }),
  });
  await pool.stream('echo');
  await pool.stop();
  t.is(s!.closedHow, 'destroy');
  const err = await t.throwsAsync(pool.stream('echo'));
  t.is((err as PeerlinkError).code, ErrorCodes.ABORTED);
});

test('streamNow: null while no session is up; then a stream of the live session at once (counted, no connect); null once it died', async (t) => {
  const made: Fake[] = [];
  const pool = createSessionPool<string>({
    idleMs: 60_000,
    logger: silentLogger(),
    connect: async (_signal, onIdle) => {
      const s = fakeSession(onIdle);
      made.push(s);
      return { session: s, info: `session ${made.length}` };
    },
  });
  t.teardown(() => pool.stop());
  t.is(pool.streamNow('echo'), null, 'no session: the caller opens one with stream()');
  t.is(made.length, 0, 'streamNow makes no session');
  const first = await pool.stream('echo');
  const now = pool.streamNow('echo');
  t.truthy(now);
  t.is(now!.info, 'session 1');
  t.is(made.length, 1, 'rode the live session');
  t.is(made[0]!.streams.length, 2);
  t.is(pool.counters.get('streamsOpened'), 2);
  made[0]!.kill();
  t.is(pool.streamNow('echo'), null, 'a dead session gives nothing at once');
  first.stream.destroy();
  now!.stream.destroy();
});
