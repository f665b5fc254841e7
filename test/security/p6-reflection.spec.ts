/**
 * P6 against reflection: the server answers and notifies only addresses that have shown they
 * receive. A stranger replaying captured packets from a victim's address draws nothing, a device
 * owner (who holds the registration key) cannot register a victim's address as its mapping, and
 * every UDP port limits what one source can draw. Sources here are real sockets; "from the
 * victim" means sent from the victim's socket while the attacker never reads what it receives,
 * exactly what a spoofed source address amounts to.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { PROBE_FLAG_CHECK_MAPPING, UDP_TYPE_COOKIE, UDP_TYPE_REGISTER_ACK } from '../../agent/protocol/constants.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { encodeProbe, encodeRegister, parseUdpPacket, REGISTER_NONCE_BYTES } from '../../agent/protocol/udp-packets.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { createServerPki, recordingUdp, startServer, waitUntil } from '../helpers/harness.js';
import { answerTo, registerThroughCookie, udpFence } from '../helpers/udp-register.js';
import { strangerWake } from '../helpers/wake.js';

const pki = createServerPki();
const ID = 'P6-REFLECT';
const key = deriveRegistrationKey(pki.masterKey, ID);

test('P6: 20 replayed probes and 20 stale registrations from a victim address draw nothing (the attack that drew 40 acks)', async (t) => {
  const probePort = await freePort();
  const server = await startServer(t, pki, { probePort });
  const to = { port: server.udpAddress().port };
  const device = await recordingUdp(t);
  const { cookie } = await registerThroughCookie(device, to, ID, key, Date.now() - 30_000);
  // What an on-path observer captures from the device: its registrations and probes (with its cookie).
  const captured: Buffer[] = [];
  for (let i = 0; i < 20; i++) {
    const nonce = randomBytes(REGISTER_NONCE_BYTES);
    const reg = encodeRegister({ equipmentId: ID, timestampMs: Date.now() - 29_000 + i, nonce, cookie: cookie! }, key);
    await device.send(reg, to);
    await answerTo(device, nonce);
    captured.push(reg);
  }
  for (let i = 0; i < 20; i++) {
    const nonce = randomBytes(REGISTER_NONCE_BYTES);
    const p = encodeProbe(
      { flags: i % 2 ? PROBE_FLAG_CHECK_MAPPING : 0, equipmentId: ID, timestampMs: Date.now(), nonce, cookie: cookie! },
      key,
    );
    await device.send(p, i % 3 ? to : { port: probePort });
    await answerTo(device, nonce);
    captured.push(p);
  }
  const deviceGot = device.received.length;
  const victim = await recordingUdp(t);
  // Each captured packet to both ports: a probe's nonce is remembered across the two.
  for (const p of captured) {
    await victim.send(p, to);
    await victim.send(p, { port: probePort });
  }
  // Control, and a fence (each port answers in the order it received): the victim's socket does
  // hear the server when it sends something new to either port, and those are all it hears.
  await victim.send(encodeProbe({ flags: 0, equipmentId: ID, timestampMs: Date.now(), nonce: randomBytes(8) }, key), to);
  await victim.send(encodeProbe({ flags: 0, equipmentId: ID, timestampMs: Date.now(), nonce: randomBytes(8) }, key), { port: probePort });
  await waitUntil(() => victim.received.length >= 2, 'a cookie request for each new probe');
  t.is(victim.received.length, 2, `the victim received ${victim.received.length - 2} datagrams besides the controls' answers`);
  t.true(victim.received.every(({ msg }) => parseUdpPacket(msg).packet.type === UDP_TYPE_COOKIE));
  // Whatever the replays made the server send the device was sent before those answers; the fence reads it.
  await udpFence(device, to, pki.masterKey);
  t.is(device.received.length, deviceGot, 'nor did the replays make the server send anything to the device');
  t.like(server.registry.get(ID), { port: device.port });
});

test('P6: a device owner registering from a victim address gets no mapping there, so no notification goes to the victim', async (t) => {
  const server = await startServer(t, pki);
  const to = { port: server.udpAddress().port };
  const device = await recordingUdp(t);
  await registerThroughCookie(device, to, ID, key);
  const victim = await recordingUdp(t);
  // The owner holds the registration key; it sends fresh registrations "from" the victim, with no
  // cookie and with guessed ones. It never sees the victim's cookie request.
  let sentBytes = 0;
  for (let i = 0; i < 10; i++) {
    const reg = encodeRegister(
      { equipmentId: ID, timestampMs: Date.now() + i, nonce: randomBytes(8), ...(i % 2 ? { cookie: randomBytes(16) } : {}) },
      key,
    );
    sentBytes += reg.length;
    await victim.send(reg, to);
  }
  await waitUntil(() => victim.received.length === 10, 'ten cookie requests');
  t.true(
    victim.received.every(({ msg }) => parseUdpPacket(msg).packet.type === UDP_TYPE_COOKIE),
    'only cookie requests',
  );
  t.true(victim.bytesReceived() <= sentBytes, `${victim.bytesReceived()} bytes to the victim for ${sentBytes} sent`);
  t.like(server.registry.get(ID), { port: device.port }, "the mapping stays the device's");
  t.true(server.registration.notify(ID, randomBytes(16), strangerWake()));
  await waitUntil(() => device.received.length >= 2, 'the notification at the device');
  await udpFence(victim, to, pki.masterKey);
  t.true(
    victim.received.every(({ msg }) => parseUdpPacket(msg).packet.type !== UDP_TYPE_REGISTER_ACK),
    'no ack and no notification reached the victim',
  );
  t.is(victim.received.length, 10);
});

test('P6: every UDP port limits what one source draws (registration and probe ports)', async (t) => {
  const probePort = await freePort();
  const server = await startServer(t, pki, { probePort, limits: { registrationsPerSource: { perSecond: 5, burst: 5 } } });
  const to = { port: server.udpAddress().port };
  const src = await recordingUdp(t);
  const SENT = 100;
  for (const port of [to.port, probePort]) {
    for (let i = 0; i < SENT; i++)
      await src.send(encodeProbe({ flags: 0, equipmentId: ID, timestampMs: Date.now(), nonce: randomBytes(8) }, key), { port });
  }
  // The registration port has handled every probe once each is counted; answers from both ports arrive in the meantime.
  const c = server.registration.counters;
  await waitUntil(
    () => (['rateLimited', 'probes', 'probesChallenged', 'probesDropped'] as const).reduce((n, k) => n + c.get(k), 0) === SENT,
    'every probe handled',
  );
  await waitUntil(() => src.received.length >= 2, 'answers from both ports');
  // Each port: the burst plus what the rate refills while sending; far below what was sent.
  t.true(src.received.length <= 2 * 20, `${src.received.length} answers to ${2 * SENT} probes`);
  t.true(src.received.length >= 2, 'some were answered (the limit is a rate, not a ban)');
  t.true(server.registration.counters.get('rateLimited') >= SENT - 20);
});
