/**
 * The server's table of kept device connections (agent/server/kept-devices.ts) is bounded: never
 * more than its cap (past it a new connection is closed), KEPT_PER_DEVICE per device (a newer one
 * replaces the oldest), and a connection whose device never says DEVICE_IDLE is closed, not kept.
 * Requests in flight together each wake one of the device's kept connections.
 */
import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { Counters } from '../../agent/common/counters.js';
import { silentLogger } from '../../agent/common/logger.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { BROKER_COUNTERS } from '../../agent/server/broker-counters.js';
import { createKeptDevices, KEPT_PER_DEVICE, type KeptDevices } from '../../agent/server/kept-devices.js';
import { randomBytes } from 'node:crypto';
import type { Wake } from '../../agent/protocol/wake.js';
import { MAC_BYTES, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { waitUntil } from '../helpers/harness.js';

/** A connected loopback pair: the server's end as a FrameChannel, the device's end as a FrameChannel. */
async function pairs(t: { teardown(fn: () => unknown): void }): Promise<() => Promise<{ server: FrameChannel; device: FrameChannel }>> {
  const accepted: Socket[] = [];
  const srv = createServer((s) => accepted.push(s));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const all: Socket[] = [];
  t.teardown(() => {
    for (const s of all) s.destroy();
    srv.close();
  });
  const port = (srv.address() as { port: number }).port;
  return async () => {
    const c = connect(port, '127.0.0.1');
    await once(c, 'connect');
    await waitUntil(() => accepted.length > 0, 'accept');
    const s = accepted.shift()!;
    all.push(c, s);
    for (const x of [c, s]) x.on('error', () => undefined);
    return { server: new FrameChannel(s), device: new FrameChannel(c) };
  };
}

function table(maxKept: number): { kept: KeptDevices; counters: Counters<(typeof BROKER_COUNTERS)[number]> } {
  const counters = new Counters(BROKER_COUNTERS);
  const kept = createKeptDevices({
    maxKept,
    maxIdleMs: 60_000,
    attachTimeoutMs: 1000,
    counters,
    logger: silentLogger(),
    clock: { now: () => Date.now() },
    onAttach: async () => undefined,
  });
  return { kept, counters };
}

test('the table never holds more than its cap; the connections past it are closed', async (t) => {
  const pair = await pairs(t);
  const { kept, counters } = table(3);
  t.teardown(() => kept.close());
  const devices: FrameChannel[] = [];
  let most = 0;
  for (let i = 0; i < 6; i++) {
    const { server, device } = await pair();
    devices.push(device);
    kept.offer(server, { equipmentId: `DEV-${i}` });
    device.send({ type: FrameType.DEVICE_IDLE, idleMs: 60_000 });
    await waitUntil(() => counters.get('kept') + counters.get('keptOverCap') === i + 1, `connection ${i} kept or refused`);
    most = Math.max(most, kept.size);
  }
  t.is(most, 3);
  t.is(kept.size, 3);
  t.is(counters.get('kept'), 3);
  t.is(counters.get('keptOverCap'), 3);
  // The three past the cap were closed by the server.
  for (const d of devices.slice(3)) await waitUntil(() => d.socket.destroyed, 'a refused connection closed');
  t.false(devices[0]!.socket.destroyed);
});

test('KEPT_PER_DEVICE kept connections per device: past it a newer one replaces the oldest, which is closed', async (t) => {
  const pair = await pairs(t);
  const { kept, counters } = table(100);
  t.teardown(() => kept.close());
  const conns: { server: FrameChannel; device: FrameChannel }[] = [];
  for (let i = 0; i <= KEPT_PER_DEVICE; i++) {
    const c = await pair();
    conns.push(c);
    kept.offer(c.server, { equipmentId: 'DEV' });
    c.device.send({ type: FrameType.DEVICE_IDLE, idleMs: 60_000 });
    await waitUntil(() => counters.get('kept') === i + 1, `kept ${i}`);
  }
  t.is(kept.size, KEPT_PER_DEVICE);
  await waitUntil(() => conns[0]!.device.socket.destroyed, 'the oldest connection closed');
  for (const c of conns.slice(1)) t.false(c.device.socket.destroyed);
  // Another device has its own share.
  const other = await pair();
  kept.offer(other.server, { equipmentId: 'OTHER' });
  other.device.send({ type: FrameType.DEVICE_IDLE, idleMs: 60_000 });
  await waitUntil(() => kept.size === KEPT_PER_DEVICE + 1, 'the other device kept');
  t.false(conns[1]!.device.socket.destroyed);
});

test("requests in flight together each wake one of the device's kept connections, newest first; none left: null (notify over UDP)", async (t) => {
  const pair = await pairs(t);
  const { kept, counters } = table(100);
  t.teardown(() => kept.close());
  const conns: { server: FrameChannel; device: FrameChannel }[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await pair();
    conns.push(c);
    kept.offer(c.server, { equipmentId: 'DEV' });
    c.device.send({ type: FrameType.DEVICE_IDLE, idleMs: 60_000 });
    await waitUntil(() => counters.get('kept') === i + 1, `kept ${i}`);
  }
  const wake: Wake = { nonce: randomBytes(NONCE_BYTES), timestampMs: Date.now(), tag: randomBytes(MAC_BYTES) };
  const woken = [0, 1, 2].map(() => kept.wake('DEV', randomBytes(16), wake));
  t.true(woken.every((w) => w !== null));
  t.is(kept.wake('DEV', randomBytes(16), wake), null, 'all taken');
  t.is(kept.size, 0);
  t.is(counters.get('keptWakes'), 3);
  // Each connection got exactly one wake, the newest first.
  const got = await Promise.all(conns.map((c) => c.device.next(1000)));
  t.true(got.every((f) => f.type === FrameType.DEVICE_WAKE));
  t.is(new Set(got.map((f) => (f.type === FrameType.DEVICE_WAKE ? f.requestId.toString('hex') : ''))).size, 3);
  for (const c of conns) c.device.close();
  await Promise.all(woken);
});

test('a device that does not ask to be kept (no DEVICE_IDLE) has its connection closed; cap 0 keeps none', async (t) => {
  const pair = await pairs(t);
  const { kept, counters } = table(10);
  t.teardown(() => kept.close());
  const a = await pair();
  kept.offer(a.server, { equipmentId: 'DEV' });
  a.device.close(); // an agent from before kept connections closes after its verdict
  await waitUntil(() => a.server.socket.destroyed, 'closed');
  t.is(kept.size, 0);
  t.is(counters.get('kept'), 0);

  const none = table(0);
  const b = await pair();
  none.kept.offer(b.server, { equipmentId: 'DEV' });
  b.device.send({ type: FrameType.DEVICE_IDLE, idleMs: 60_000 });
  await waitUntil(() => b.device.socket.destroyed, 'closed at once with cap 0');
  t.is(none.kept.size, 0);
});
