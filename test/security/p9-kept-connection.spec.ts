/**
 * P9 over a kept device connection (issue 15): a wake that comes over the device's kept attach
 * connection is checked exactly as a UDP notification's. A bad wake proof is refused (the client
 * learns AUTH_FAILED), nothing attaches and nothing is dialled, and the connection is closed; a
 * genuine request after it is notified over UDP and accepted.
 */
import test from 'ava';
import { Status } from '../../agent/protocol/status.js';
import { acceptor, request, world } from '../helpers/fake-client.js';
import { sleep, waitUntil } from '../helpers/harness.js';
import { strangerWake } from '../helpers/wake.js';

test('P9: a wake with a bad proof over a kept connection is refused, nothing is dialled, the connection is closed', async (t) => {
  const w = await world(t);
  const acc = await acceptor(t);
  const broker = w.server.broker;

  t.is((await request(w, acc, {})).status, Status.OK);
  await waitUntil(() => acc.dials() >= 1, 'the device dials the genuine client');
  await waitUntil(() => broker.keptDevices === 1, 'the server keeps the device connection');
  const attachesBefore = broker.counters.get('deviceAttachConnections');
  const dialsBefore = acc.dials();
  const refusedBefore = w.agent.counters.get('wakeRefused');

  t.is((await request(w, acc, { wake: strangerWake() })).status, Status.AUTH_FAILED);
  t.is(broker.counters.get('keptWakes'), 1, 'the wake went over the kept connection');
  t.is(w.agent.counters.get('keptWakes'), 1);
  t.is(w.agent.counters.get('wakeRefused'), refusedBefore + 1, 'refused by the wake check, as a UDP wake is');
  t.is(broker.counters.get('deviceAttachConnections'), attachesBefore, 'no attach');
  await waitUntil(() => broker.keptDevices === 0, 'the connection the refused wake came over is closed');
  await sleep(300);
  t.is(acc.dials(), dialsBefore, 'nothing dialled for the refused wake');

  // The patent's path is the fallback: the next genuine request is notified over UDP and served.
  t.is((await request(w, acc, {})).status, Status.OK);
  t.is(broker.counters.get('keptWakes'), 1);
  t.is(broker.counters.get('deviceAttachConnections'), attachesBefore + 1);
});
