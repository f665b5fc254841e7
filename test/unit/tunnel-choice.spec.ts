/**
 * Path nomination: the client keeps only a stream on which the device sent the chosen byte, and
 * the bytes after it are the session's own (nothing is lost or swallowed).
 */
import test, { type ExecutionContext } from 'ava';
import { createServer, connect, type Socket } from 'node:net';
import { announceChosen, awaitChosen } from '../../agent/protocol/tunnel-choice.js';

async function pair(t: ExecutionContext): Promise<[Socket, Socket]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const a = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
  const b = await accepted;
  t.teardown(() => {
    a.destroy();
    b.destroy();
  });
  return [a, b];
}

test('the chosen stream resolves, and the data behind the byte is read intact afterwards', async (t) => {
  const [device, client] = await pair(t);
  announceChosen(device);
  device.write('hello after the byte');
  const s = await awaitChosen(client, 2000);
  const got = await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
  t.is(got, 'hello after the byte');
});

test('a stream the device closes without choosing it is rejected (the device kept another path)', async (t) => {
  const [device, client] = await pair(t);
  device.end();
  const err = await t.throwsAsync(awaitChosen(client, 2000));
  t.is((err as { code?: string }).code, 'PEERLINK_ERR_PEER_TIMEOUT');
});

test('anything but the chosen byte first is a protocol error', async (t) => {
  const [device, client] = await pair(t);
  device.write('GET / HTTP/1.1\r\n');
  const err = await t.throwsAsync(awaitChosen(client, 2000));
  t.is((err as { code?: string }).code, 'PEERLINK_ERR_PROTOCOL');
});

test('a stream on which nothing arrives times out', async (t) => {
  const [, client] = await pair(t);
  const err = await t.throwsAsync(awaitChosen(client, 200));
  t.is((err as { code?: string }).code, 'PEERLINK_ERR_PEER_TIMEOUT');
});
