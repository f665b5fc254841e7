import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import type { Client, Tunnel } from '../../agent/client/client.js';
import { createLocalForward } from '../../agent/client/local-forward.js';
import { silentLogger } from '../../agent/common/logger.js';

const LOOPBACK = '127.0.0.1';

/** An echo service standing in for the device's; a "tunnel" is a plain connection to it. */
async function echo(): Promise<{ tunnel(): Promise<Tunnel>; close(): void }> {
  const s = createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
  s.listen(0, LOOPBACK);
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  return {
    async tunnel() {
      const c = connect(port, LOOPBACK);
      await once(c, 'connect');
      return { stream: c, via: 'dial', path: 'test', connectMs: 0 } as unknown as Tunnel;
    },
    close: () => s.close(),
  };
}

async function roundTrip(port: number, text: string): Promise<string> {
  const s = connect(port, LOOPBACK);
  await once(s, 'connect'); // accepted at once, not refused
  s.end(text);
  let got = '';
  s.setEncoding('utf8').on('data', (d: string) => (got += d));
  await once(s, 'close');
  return got;
}

test('--listen opens its port at once: connections made before the first tunnel is up wait for it, then flow', async (t) => {
  const svc = await echo();
  t.teardown(() => svc.close());
  let opens = 0;
  const client = { open: () => (opens++, svc.tunnel()), openLive: () => null, attachLive: () => false } as unknown as Client;
  let resolveFirst!: (tun: Tunnel) => void;
  const first = new Promise<Tunnel>((r) => (resolveFirst = r));
  const fwd = createLocalForward({ client, listen: { host: LOOPBACK, port: 0 }, logger: silentLogger(), first });
  const { port } = await fwd.start();
  t.teardown(() => fwd.stop());
  const early = [roundTrip(port, 'one'), roundTrip(port, 'two')];
  await new Promise((r) => setTimeout(r, 100));
  t.is(opens, 0, 'nobody asked for a tunnel of their own before the first one settled');
  resolveFirst(await svc.tunnel());
  t.deepEqual((await Promise.all(early)).sort(), ['one', 'two']);
  t.is(opens, 1, 'one early connection got the first tunnel, the other its own');
  t.is(fwd.counters.get('served'), 2);
});

test('--listen: when the first tunnel fails, the connections held for it are closed and nothing else is tried', async (t) => {
  let opens = 0;
  const client = {
    open: () => (opens++, Promise.reject(new Error('no'))),
    openLive: () => null,
    attachLive: () => false,
  } as unknown as Client;
  let rejectFirst!: (err: Error) => void;
  const first = new Promise<Tunnel>((_r, j) => (rejectFirst = j));
  const fwd = createLocalForward({ client, listen: { host: LOOPBACK, port: 0 }, logger: silentLogger(), first });
  const { port } = await fwd.start();
  t.teardown(() => fwd.stop());
  const s: Socket = connect(port, LOOPBACK);
  s.on('error', () => undefined);
  await once(s, 'connect');
  rejectFirst(new Error('wrong password'));
  await once(s, 'close');
  t.is(opens, 0);
  t.is(fwd.counters.get('openFailed'), 1);
});

test('--listen: stop() cancels the tunnel requests of connections still waiting; a served connection closing cancels nothing', async (t) => {
  const svc = await echo();
  t.teardown(() => svc.close());
  const signals: AbortSignal[] = [];
  let hold = false;
  const client = {
    open: (signal: AbortSignal) => {
      signals.push(signal);
      // Held: resolves only if its signal is aborted (then rejects, as the real client does).
      if (hold) return new Promise<Tunnel>((_r, j) => signal.addEventListener('abort', () => j(signal.reason as Error), { once: true }));
      return svc.tunnel();
    },
    openLive: () => null,
    attachLive: () => false,
  } as unknown as Client;
  const fwd = createLocalForward({ client, listen: { host: LOOPBACK, port: 0 }, logger: silentLogger() });
  const { port } = await fwd.start();
  t.is(await roundTrip(port, 'served'), 'served');
  t.false(signals[0]!.aborted, 'a connection that got its tunnel and closed leaves its signal alone');
  hold = true;
  const waiting = connect(port, LOOPBACK);
  waiting.on('error', () => undefined);
  await once(waiting, 'connect');
  while (signals.length < 2) await new Promise((r) => setTimeout(r, 10));
  t.false(signals[1]!.aborted);
  const closed = once(waiting, 'close');
  await fwd.stop();
  t.true(signals[1]!.aborted, 'stop() cancelled the request of the connection still waiting');
  await closed;
  t.is(fwd.counters.get('openFailed'), 1);
});

test('--listen with a session up: each connection gets its stream at once (openLive), takes no pending slot and asks open() for nothing', async (t) => {
  const svc = await echo();
  t.teardown(() => svc.close());
  // Streams of "the live session", made ahead: openLive hands them over synchronously.
  const ready = await Promise.all([svc.tunnel(), svc.tunnel(), svc.tunnel()]);
  let opens = 0;
  const client = {
    open: () => (opens++, new Promise<Tunnel>(() => undefined)), // never: a connection that waited would hang
    openLive: () => ready.shift() ?? null,
    attachLive: () => false,
  } as unknown as Client;
  // One pending slot: three connections at once would overflow it if they waited.
  const fwd = createLocalForward({ client, listen: { host: LOOPBACK, port: 0 }, logger: silentLogger(), maxPending: 1 });
  const { port } = await fwd.start();
  t.teardown(() => fwd.stop());
  t.deepEqual((await Promise.all([roundTrip(port, 'a'), roundTrip(port, 'b'), roundTrip(port, 'c')])).sort(), ['a', 'b', 'c']);
  t.is(opens, 0);
  t.is(fwd.counters.get('served'), 3);
  t.is(fwd.counters.get('overCap'), 0);
});

test('--listen: stop() closes connections that got a live stream', async (t) => {
  const svc = await echo();
  t.teardown(() => svc.close());
  const ready = [await svc.tunnel()];
  const client = {
    open: () => new Promise<Tunnel>(() => undefined),
    openLive: () => ready.shift() ?? null,
    attachLive: () => false,
  } as unknown as Client;
  const fwd = createLocalForward({ client, listen: { host: LOOPBACK, port: 0 }, logger: silentLogger() });
  const { port } = await fwd.start();
  const s = connect(port, LOOPBACK);
  s.on('error', () => undefined);
  await once(s, 'connect');
  while (fwd.counters.get('served') < 1) await new Promise((r) => setTimeout(r, 5));
  const closed = once(s, 'close');
  await fwd.stop();
  await closed;
  t.pass('the connection was closed by stop()');
});
