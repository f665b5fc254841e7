/**
 * P10: nobody holds a connection on the server's TLS port for free. A TLS handshake has a
 * deadline (silent mid-handshake, the connection is closed then, not left in CLOSE_WAIT; half-closed
 * mid-handshake, at once); connections not yet identified (in the handshake or before their first frame) are
 * capped, the excess dropped at once and counted; a peer that half-closes before saying what it
 * is, or while it waits at the relay, gets closed at once; after a refusal the server ends and then destroys the connection, also
 * when the peer never closes its side.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { Status } from '../../agent/protocol/status.js';
import type { RendezvousServer } from '../../agent/server/server.js';
import { httpGet, sample } from '../helpers/multi-node.js';
import { createServerPki, LOOPBACK, startServer, waitUntil, type Cleanup } from '../helpers/harness.js';
import { strangerWake } from '../helpers/wake.js';
import { secureTo } from '../helpers/hostile-sockets.js';

const pki = createServerPki();
/** Far beyond any test here: what must happen earlier cannot be these deadlines at work. */
const LONG_MS = 120_000;
/** The first bytes of a TLS ClientHello record, and no more. */
const PARTIAL_CLIENT_HELLO = Buffer.from('160301002c010000280303', 'hex');

function tcp(t: Cleanup, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: our FIN must not make the socket close by itself; only the server may.
    const s = netConnect({ host: LOOPBACK, port, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
    s.on('data', () => undefined);
    t.teardown(() => s.destroy());
  });
}

const secure = (t: Cleanup, port: number): Promise<{ socket: TLSSocket; channel: FrameChannel }> => secureTo(t, port, pki.caPem);

/** The server closed its side (its FIN or RST reached us). */
const closedByServer = (s: Socket): Promise<void> =>
  new Promise((resolve) => {
    if (s.readableEnded || s.destroyed) return resolve();
    s.once('end', () => resolve());
    s.once('close', () => resolve());
  });

const total = (s: RendezvousServer): number => Object.values(s.broker.open).reduce((n, c) => n + c, 0);

test('a TLS handshake that stalls, silent or half-closed, is closed at the handshake deadline', async (t) => {
  const s = await startServer(t, pki, { handshakeTimeoutMs: 300 });
  const port = s.tlsAddress().port;
  const silent = await tcp(t, port);
  const halfClosed = await tcp(t, port);
  halfClosed.end(PARTIAL_CLIENT_HELLO);
  await waitUntil(() => silent.readableEnded || silent.destroyed, 'the silent handshake is closed by the server', 10_000);
  await waitUntil(() => halfClosed.readableEnded || halfClosed.destroyed, 'the half-closed handshake is closed by the server', 10_000);
  await waitUntil(() => total(s) === 0, 'the server holds neither connection', 10_000);
  // The silent one at the deadline; the half-closed one as soon as its end came (a failed
  // handshake, not a timeout: test/server/handshake-end.spec.ts).
  t.is(s.broker.counters.get('handshakeTimeout'), 1);
  t.is(s.broker.counters.get('handshakeFailed'), 1);
});

test('connections not yet identified are capped: the excess is dropped at once and counted', async (t) => {
  const s = await startServer(t, pki, { handshakeTimeoutMs: LONG_MS, maxUnidentifiedConnections: 3, metrics: { host: LOOPBACK, port: 0 } });
  const port = s.tlsAddress().port;
  const held = [await tcp(t, port), await tcp(t, port)];
  const { socket: unidentified, channel } = await secure(t, port);
  await waitUntil(() => s.broker.open.handshake === 2 && s.broker.open.unidentified === 1, 'three connections held');
  const excess = await tcp(t, port);
  await closedByServer(excess);
  t.is(s.broker.counters.get('unidentifiedOverCap'), 1);
  t.true(
    held.every((h) => !h.readableEnded && !h.destroyed),
    'those within the cap stay',
  );

  // Once one says what it is (a client's request), it no longer counts against the cap.
  channel.send({
    type: FrameType.CONNECT_REQUEST,
    equipmentId: 'TV-NONE',
    advertisedPort: 9,
    wake: strangerWake(),
    sealedRequest: randomBytes(64),
  });
  const answer = await channel.next(5_000);
  t.like(answer, { type: FrameType.CONNECT_RESULT, status: Status.UNKNOWN_DEVICE });
  await closedByServer(unidentified);
  const next = await tcp(t, port);
  await waitUntil(() => s.broker.open.handshake === 3, 'a new connection is taken within the cap');
  t.false(next.readableEnded || next.destroyed);
  const m = (await httpGet(s.metricsAddress()!.port, '/metrics')).body;
  t.is(sample(m, /^peerlink_tls_connections_dropped_total\{reason="unidentified_over_cap"/), 1);
  t.is(sample(m, /^peerlink_tls_connections\{kind="handshake"/), 3);
});

test('a secure connection that half-closes before its first frame is closed at once, not at the deadline', async (t) => {
  const s = await startServer(t, pki, { handshakeTimeoutMs: LONG_MS });
  const { socket } = await secure(t, s.tlsAddress().port);
  socket.end();
  await waitUntil(() => socket.readableEnded || socket.destroyed, 'the server closes its side', 5_000);
  await waitUntil(() => total(s) === 0, 'the server holds no connection');
  t.is(s.broker.counters.get('badFirstFrame'), 1);
});

test('a relay side that half-closes before it is paired is closed at once, not at the join deadline', async (t) => {
  const s = await startServer(t, pki, { handshakeTimeoutMs: LONG_MS, relay: { joinTimeoutMs: LONG_MS } });
  const requestId = randomBytes(16);
  const offer = s.relay.offer(requestId, 'TV-1', LOOPBACK);
  if (!offer.ok) throw new Error('the relay offer was refused');
  const { socket, channel } = await secure(t, s.tlsAddress().port);
  channel.send({ type: FrameType.RELAY_JOIN_CLIENT, requestId, joinToken: offer.joinToken });
  await waitUntil(() => s.broker.open.relay === 1, 'the client waits at the relay');
  socket.end();
  await waitUntil(() => socket.readableEnded || socket.destroyed, 'the server closes its side', 5_000);
  await waitUntil(() => total(s) === 0, 'the server holds no connection');
  t.is(s.relay.counters.get('paired'), 0);
});

test('after a refusal the server ends the connection and destroys it, also when the peer never closes its side', async (t) => {
  const s = await startServer(t, pki, { handshakeTimeoutMs: LONG_MS });
  const { socket, channel } = await secure(t, s.tlsAddress().port);
  channel.send({
    type: FrameType.CONNECT_REQUEST,
    equipmentId: 'TV-NONE',
    advertisedPort: 9,
    wake: strangerWake(),
    sealedRequest: randomBytes(64),
  });
  t.like(await channel.next(5_000), { type: FrameType.CONNECT_RESULT, status: Status.UNKNOWN_DEVICE });
  await closedByServer(socket);
  t.false(socket.writableEnded, 'we keep our side open');
  await waitUntil(() => total(s) === 0, 'the server destroyed its socket', 10_000);
});
