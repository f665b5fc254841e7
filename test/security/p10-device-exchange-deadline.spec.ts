/**
 * P10 (the device exchange): the device's side of a request has one deadline, counted from the start of the exchange.
 * A device (or anyone holding its identity) that keeps sending CANDIDATES frames instead of its
 * verdict cannot hold the request — and the client waiting on it — open: at the deadline the
 * client gets DEVICE_NO_ANSWER and the server closes the device's connection.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect } from '../../agent/client/client.js';
import { ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { ATTACH_EXPORTER_LABEL, attachProof, deriveRegistrationKey, KEY_BYTES } from '../../agent/protocol/keys.js';
import { UDP_TYPE_NOTIFY } from '../../agent/protocol/constants.js';
import { parseUdpPacket } from '../../agent/protocol/udp-packets.js';
import { createServerPki, LOOPBACK, recordingUdp, startServer, waitUntil } from '../helpers/harness.js';

const pki = createServerPki();
const ID = 'TV-CHATTY-1';
const ATTACH_TIMEOUT_MS = 1_500;
/** Well under the attach timeout: each frame would have reset a per-frame timer. */
const CANDIDATES_EVERY_MS = 200;

test('a device sending CANDIDATES for ever does not hold the exchange past its deadline', async (t) => {
  const server = await startServer(t, pki, { attachTimeoutMs: ATTACH_TIMEOUT_MS });
  const deviceUdp = await recordingUdp(t);
  server.registry.set(ID, { address: LOOPBACK, port: deviceUdp.port, lastSeenMs: Date.now(), lastTimestampMs: Date.now() });

  const clientAnswer = connect(
    {
      server: { host: LOOPBACK, port: server.tlsAddress().port },
      serverName: 'localhost',
      caPem: pki.caPem,
      equipmentId: ID,
      accessKey: randomBytes(32),
      service: 'echo',
      accept: { host: LOOPBACK, port: 0 },
    },
    // Far past the deadline: the client must not need its own timeout to get an answer.
    AbortSignal.timeout(20 * ATTACH_TIMEOUT_MS),
  ).then(
    () => 'connected',
    (err: unknown) => (isPeerlinkError(err) ? err.code : String(err)),
  );

  await waitUntil(() => deviceUdp.received.length > 0, 'the device is notified');
  const notify = parseUdpPacket(deviceUdp.received[0]!.msg).packet;
  if (notify.type !== UDP_TYPE_NOTIFY) return t.fail('expected a notification');
  const requestId = notify.requestId;

  const tls = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ host: LOOPBACK, port: server.tlsAddress().port, servername: 'localhost', ca: pki.caPem }, () => resolve(s));
    s.once('error', reject);
  });
  t.teardown(() => tls.destroy());
  const closedByServer = new Promise<void>((resolve) => tls.once('close', () => resolve()));
  const channel = new FrameChannel(tls);
  await channel.next(5_000); // HELLO
  const exporter = tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
  const proof = attachProof(deriveRegistrationKey(pki.masterKey, ID), requestId, exporter);
  channel.send({ type: FrameType.DEVICE_ATTACH, equipmentId: ID, requestId, proof });
  t.is((await channel.next(5_000)).type, FrameType.CANDIDATES);
  t.is((await channel.next(5_000)).type, FrameType.FORWARD_REQUEST);

  // Chatter: valid frames, no verdict, for as long as the connection stays open.
  const chatter = setInterval(() => channel.send({ type: FrameType.CANDIDATES, candidates: [] }), CANDIDATES_EVERY_MS);
  t.teardown(() => clearInterval(chatter));

  t.is(await clientAnswer, ErrorCodes.DEVICE_NO_ANSWER);
  await closedByServer;
  clearInterval(chatter);
  t.is(server.broker.counters.get('noAnswer'), 1);
  t.is(server.broker.inFlight, 0, 'the request is over at the server too');
});
