/**
 * P10 (the client's listeners): the accept port where the device's connection arrives (which a
 * router may forward, `--map-port`) closes every connection that has not completed its PSK
 * handshake by the deadline, whatever the peer does, and admits at most `maxPending` at once. The
 * `--listen` port bounds the connections waiting for their tunnel the same way, and a local
 * connection that goes away cancels its request.
 */
import test, { type ExecutionContext } from 'ava';
import { readdirSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { acceptTunnel } from '../../agent/client/tunnel-server.js';
import { ErrorCodes } from '../../agent/common/errors.js';
import { createPeerListener } from '../../agent/client/peer-listener.js';
import { createLocalForward } from '../../agent/client/local-forward.js';
import type { Client, Tunnel } from '../../agent/client/client.js';
import { silentLogger } from '../../agent/common/logger.js';
import { LOOPBACK, waitUntil } from '../helpers/harness.js';
import { open, settle } from '../helpers/hostile-sockets.js';

const HANDSHAKE_TIMEOUT_MS = 300;
const fdCount = (): number => readdirSync('/proc/self/fd').length;

async function peerListener(t: ExecutionContext, opts: { handshakeTimeoutMs: number; maxPending?: number }) {
  const l = createPeerListener({ host: LOOPBACK, port: 0, ...opts });
  await l.start();
  t.teardown(() => l.stop());
  return l;
}

test('P10: the client’s accept port closes half-closed, silent, trickling and reset connections by the handshake deadline; no descriptor is left', async (t) => {
  const l = await peerListener(t, { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS });
  const port = l.address().port;
  const baseline = fdCount();
  let leftOpen = 0;
  // A few bytes of a ClientHello, then a half-close.
  for (let i = 0; i < 20; i++) {
    const socks = await Promise.all(Array.from({ length: 50 }, () => open(port)));
    for (const s of socks) {
      s.on('error', () => undefined);
      s.end(Buffer.from([0x16, 0x03, 0x01]));
    }
    leftOpen += await settle(socks, HANDSHAKE_TIMEOUT_MS * 10);
  }
  const silent = await Promise.all(Array.from({ length: 50 }, () => open(port)));
  const trickle = await Promise.all(Array.from({ length: 5 }, () => open(port)));
  // A TLS record header announcing a large record, then one byte at a time (never complete).
  for (const s of trickle) s.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]));
  const timers = trickle.map((s) => setInterval(() => s.writable && s.write(Buffer.from([0])), 50));
  t.teardown(() => timers.forEach(clearInterval));
  for (const s of [...silent, ...trickle]) s.on('error', () => undefined);
  const reset = await Promise.all(Array.from({ length: 50 }, () => open(port)));
  for (const s of reset) {
    s.on('error', () => undefined);
    s.write(Buffer.from([0x16]));
    s.resetAndDestroy();
  }
  leftOpen += await settle([...silent, ...trickle], HANDSHAKE_TIMEOUT_MS * 20);
  timers.forEach(clearInterval);
  let now = fdCount();
  try {
    await waitUntil(() => (now = fdCount()) <= baseline, 'this process’s descriptors to come back to the baseline', 5000, 50);
  } finally {
    t.log(`fds: baseline ${baseline}, at the end ${now}; connections the listener left open: ${leftOpen}`);
  }
  t.is(leftOpen, 0, 'every connection was closed by the listener');
  t.true(l.counters.get('handshakeTimeout') >= 55, `handshake timeouts: ${l.counters.get('handshakeTimeout')}`);
});

test('P10: the client’s accept port: a half-close before the handshake is dropped at once, not at the deadline', async (t) => {
  const l = await peerListener(t, { handshakeTimeoutMs: 60_000 });
  const s = await open(l.address().port);
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  s.end(Buffer.from([0x16, 0x03, 0x01]));
  await waitUntil(() => s.destroyed, 'the listener to close the half-closed connection', 5000);
  t.is(l.counters.get('handshakeFailed'), 1);
});

test('P10: the client’s accept port: connections beyond maxPending are destroyed at once and counted', async (t) => {
  const l = await peerListener(t, { handshakeTimeoutMs: 60_000, maxPending: 8 });
  const socks: Socket[] = [];
  t.teardown(() => socks.forEach((s) => s.destroy()));
  for (let i = 0; i < 20; i++) {
    const s = await open(l.address().port);
    s.on('error', () => undefined);
    socks.push(s);
  }
  await waitUntil(() => l.counters.get('overCap') === 12, '12 connections over the cap to be counted');
  await waitUntil(() => socks.filter((s) => s.destroyed).length === 12, 'the 12 to be closed by the listener');
  t.deepEqual(
    socks.slice(0, 8).map((s) => s.destroyed),
    Array(8).fill(false),
  );
});

/** A client whose tunnels never open: each open() waits until its signal aborts. */
function stuckClient(): { client: Client; opened: AbortSignal[] } {
  const opened: AbortSignal[] = [];
  const client = {
    open: (signal?: AbortSignal) =>
      new Promise<Tunnel>((_resolve, reject) => {
        opened.push(signal!);
        signal!.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      }),
    openLive: () => null,
    attachLive: () => false,
  } as unknown as Client;
  return { client, opened };
}

test('P10: --listen: at most maxPending local connections wait for a tunnel; the rest are dropped at once; each waits until openTimeoutMs', async (t) => {
  const { client, opened } = stuckClient();
  const fwd = createLocalForward({
    client,
    listen: { host: LOOPBACK, port: 0 },
    logger: silentLogger(),
    maxPending: 4,
    openTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  });
  const { port } = await fwd.start();
  t.teardown(() => fwd.stop());
  const socks = await Promise.all(Array.from({ length: 10 }, () => open(port)));
  for (const s of socks) s.on('error', () => undefined);
  await waitUntil(() => fwd.counters.get('overCap') === 6, '6 connections over the cap');
  t.is(opened.length, 4, 'only the admitted connections asked the server for a tunnel');
  t.is(await settle(socks, HANDSHAKE_TIMEOUT_MS * 20), 0, 'every connection was closed');
  t.true(
    opened.every((s) => s.aborted),
    'their requests were cancelled at the deadline',
  );
  t.is(fwd.counters.get('openFailed'), 4);
});

test('P10: --listen: a local connection that goes away (reset) cancels its tunnel request', async (t) => {
  const { client, opened } = stuckClient();
  const fwd = createLocalForward({ client, listen: { host: LOOPBACK, port: 0 }, logger: silentLogger(), openTimeoutMs: 60_000 });
  const { port } = await fwd.start();
  t.teardown(() => fwd.stop());
  const s = await open(port);
  s.on('error', () => undefined);
  await waitUntil(() => opened.length === 1, 'the tunnel request');
  s.resetAndDestroy();
  await waitUntil(() => opened[0]!.aborted, 'the request to be cancelled', 5000);
  t.pass();
});

test('P10: the client’s end of a punched or reverse-dialled carrier: one that ends before the handshake fails at once (TUNNEL_BROKEN) and is destroyed', async (t) => {
  const carriers: Socket[] = [];
  const outcomes: Promise<unknown>[] = [];
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    carriers.push(sock);
    const expected = { clientNonce: Buffer.alloc(16, 1), accessKey: Buffer.alloc(32, 2), equipmentId: 'dev-1', service: 'echo' };
    outcomes.push(acceptTunnel(sock, expected, 60_000, new AbortController().signal, 'in the test'));
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const addr = server.address();
  const s = await open(typeof addr === 'object' && addr ? addr.port : 0);
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  s.end(Buffer.from([0x16, 0x03, 0x01]));
  await waitUntil(() => outcomes.length === 1, 'the carrier to arrive');
  // The timeout is a minute away: only the early end can settle it within the test's time.
  const err = await t.throwsAsync(outcomes[0]!);
  t.is((err as { code?: string }).code, ErrorCodes.TUNNEL_BROKEN);
  t.true(carriers[0]!.destroyed);
});
