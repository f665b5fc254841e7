/**
 * P6 for probes: a probe changes nothing at the server; a bad tag gets no answer; the mapping
 * check goes only to the mapping the ID registered, never to the probe's source, and only for a
 * probe as large as the ack and the check together; the probe port never sends checks.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { PROBE_FLAG_CHECK_MAPPING, UDP_TYPE_MAPPING_CHECK, UDP_TYPE_REGISTER_ACK } from '../../agent/protocol/constants.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { encodeProbe, encodeRegister, parseUdpPacket, verifyTag } from '../../agent/protocol/udp-packets.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { createServerPki, recordingUdp, sleep, startServer, waitUntil } from './lib/helpers.js';

const pki = createServerPki();
const ID = 'P6-PROBE';
const key = deriveRegistrationKey(pki.masterKey, ID);
const probe = (flags: number, k = key) => encodeProbe({ flags, equipmentId: ID, timestampMs: Date.now(), nonce: randomBytes(8) }, k);

test('probes: no registry change, bad tags unanswered, checks only to the registered mapping and never more bytes than received', async (t) => {
  const probePort = await freePort();
  const server = await startServer(t, pki, { probePort });
  const udp = server.udpAddress().port;
  const device = await recordingUdp(t);
  const attacker = await recordingUdp(t);

  // A probe before any registration: answered, but nothing is registered and no check is sent.
  await attacker.send(probe(PROBE_FLAG_CHECK_MAPPING), { port: udp });
  await waitUntil(() => attacker.received.length === 1, 'probe answered');
  t.is(server.registry.get(ID), undefined);
  t.is(parseUdpPacket(attacker.received[0]!.msg).packet.type, UDP_TYPE_REGISTER_ACK);

  // Forged probes (wrong key): silence.
  await attacker.send(probe(0, randomBytes(32)), { port: udp });
  await attacker.send(probe(PROBE_FLAG_CHECK_MAPPING, randomBytes(32)), { port: probePort });
  await sleep(150);
  t.is(attacker.received.length, 1);

  // The device registers; a probe from elsewhere asking for a check: the check goes to the device only.
  await device.send(encodeRegister({ equipmentId: ID, timestampMs: Date.now(), nonce: randomBytes(8) }, key), { port: udp });
  await waitUntil(() => device.received.length === 1, 'registration acked');
  const p = probe(PROBE_FLAG_CHECK_MAPPING);
  await attacker.send(p, { port: udp });
  await waitUntil(() => device.received.length === 2 && attacker.received.length === 2, 'ack and check');
  const check = parseUdpPacket(device.received[1]!.msg);
  t.is(check.packet.type, UDP_TYPE_MAPPING_CHECK);
  t.true(verifyTag(check, key));
  t.is(parseUdpPacket(attacker.received[1]!.msg).packet.type, UDP_TYPE_REGISTER_ACK, 'the prober gets only the ack');
  t.true(attacker.received[1]!.msg.length + device.received[1]!.msg.length <= p.length, 'ack + check <= probe (P6)');
  t.like(server.registry.get(ID), { port: device.port }, 'the probe did not move the registration');

  // A probe with the flag but without the padding (hand-made): answered, no check.
  const short = probe(0);
  short[4] = PROBE_FLAG_CHECK_MAPPING; // the flags byte; the tag no longer verifies, so: silence
  await attacker.send(short, { port: udp });
  // The probe port answers but never sends checks.
  await attacker.send(probe(PROBE_FLAG_CHECK_MAPPING), { port: probePort });
  await waitUntil(() => attacker.received.length === 3, 'probe port answered');
  await sleep(150);
  t.is(device.received.length, 2, 'no check from the probe port, none for the tampered probe');
  t.is(attacker.received.length, 3);
});
