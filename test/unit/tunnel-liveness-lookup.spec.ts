import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { procEndpoint, retransmits } from '../../agent/common/tunnel-liveness.js';

const LOOPBACK = '127.0.0.1';

test('the stall watch finds a live socket in /proc/net/tcp (one line looked up among all) and reads its retransmission count', async (t) => {
  if (!existsSync('/proc/net/tcp')) return t.pass('no /proc/net/tcp here: only keepalive applies');
  const server = createServer((s) => s.on('error', () => undefined));
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  // Other sockets in the table, as a busy client has: the lookup must pick the right line.
  const others: Socket[] = [];
  for (let i = 0; i < 20; i++) others.push(connect((server.address() as { port: number }).port, LOOPBACK));
  await Promise.all(others.map((s) => once(s, 'connect')));
  t.teardown(() => {
    for (const s of others) s.destroy();
    server.close();
  });
  const s = others[7]!;
  const local = procEndpoint(s.localAddress!, s.localPort!)!;
  const remote = procEndpoint(s.remoteAddress!, s.remotePort!)!;
  t.is(await retransmits(local, remote), 0, 'an acknowledged connection: no retransmission timeouts');
  t.is(await retransmits(remote, local), 0, 'the accepted end too');
  t.is(await retransmits(local, procEndpoint(LOOPBACK, 1)!), null, 'a pair that does not exist is not found');
});
