/**
 * The server's table of kept device connections (agent/server/kept-devices.ts) is bounded: never
 * more than its cap (past it a new connection is closed), one per device (a newer one replaces
 * the older), and a connection whose device never says DEVICE_IDLE is closed, not kept.
 */
import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { Counters } from '../../agent/common/counters.js';
import { silentLogger } from '../../agent/common/logger.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { BROKER_COUNTERS } from '../../agent/server/broker-counters.js';
import { createKeptDevices, type KeptDevices } from '../../agent/server/kept-devices.js';
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

test('one kept connection per device: a newer one replaces the older, which is closed', async (t) => {
  const pair = await pairs(t);
  const { kept, counters } = table(10);
  t.teardown(() => kept.close());
  const a = await pair();
  kept.offer(a.server, { equipmentId: 'DEV' });
  a.device.send({ type: FrameType.DEVICE_IDLE, idleMs: 60_000 });
  await waitUntil(() => counters.get('kept') === 1, 'kept');
  const b = await pair();
  kept.offer(b.server, { equipmentId: 'DEV' });
  b.device.send({ type: FrameType.DEVICE_IDLE, idleMs: 60_000 });
  await waitUntil(() => counters.get('kept') === 2, 'kept again');
  t.is(kept.size, 1);
  await waitUntil(() => a.device.socket.destroyed, 'the older connection closed');
  t.false(b.device.socket.destroyed);
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
