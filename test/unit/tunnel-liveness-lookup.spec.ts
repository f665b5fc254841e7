import test from 'ava';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { procEndpoint, retransmits, unansweredIn } from '../../agent/common/tunnel-liveness.js';

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

test('a host whose own link is down: unanswered probes count as retransmission timeouts (lines as /proc/net/tcp showed them)', (t) => {
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
  const line = (probes: number, retrnsmt = '00000000'): string =>
    `   0: 01004D0A:D2C4 02004D0A:270F 01 00012BC8:00000000 04:00000A01 ${retrnsmt}     0        ${probes} 123456 1 0000000000000000 20 4 30 10 -1\n`;
  t.is(unansweredIn(header + line(7), '01004D0A:D2C4', '02004D0A:270F'), 7, 'link down: retrnsmt 0, 7 probes unanswered');
  t.is(unansweredIn(header + line(0, '00000003'), '01004D0A:D2C4', '02004D0A:270F'), 3, 'retransmission timeouts as before');
  t.is(unansweredIn(header + line(7), '01004D0A:D2C4', '02004D0A:0001'), null, 'another socket: not found');
});
