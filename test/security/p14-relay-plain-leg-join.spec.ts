/**
 * The relay join on a plain leg (no TLS to the server, issue 15) keeps the join binding of P14 and
 * the server's authentication of P5 for the join: a client proves the join token the server gave it
 * over its own CA-verified TLS, a device proves K_reg, each over both sides' nonces; the server
 * proves the same key first, so a joiner never pairs through someone posing as the server. The
 * request ID (in the clear in the NOTIFY) or a proof seen on the wire gets nobody in.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, createServer as netServer, type Socket } from 'node:net';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType, RelayRole } from '../../agent/protocol/frames.js';
import { deriveRegistrationKey, relayLegProof } from '../../agent/protocol/keys.js';
import { joinRelayLeg } from '../../agent/rendezvous/relay-leg-join.js';
import { createServerPki, LOOPBACK, startServer, waitUntil, type Cleanup } from '../helpers/harness.js';

const pki = createServerPki();
const LONG_MS = 120_000;

async function plain(t: Cleanup, port: number): Promise<{ socket: Socket; channel: FrameChannel }> {
  const socket = netConnect({ host: LOOPBACK, port });
  socket.on('error', () => undefined);
  t.teardown(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  return { socket, channel: new FrameChannel(socket) };
}

const closed = (s: Socket): boolean => s.destroyed || s.readableEnded;

test('a plain client leg needs the join token: the request ID with a key of its own, or a proof replayed from another connection, does not join; the real client pairs', async (t) => {
  const s = await startServer(t, pki, { relay: { joinTimeoutMs: LONG_MS } });
  const port = s.tlsAddress().port;
  const requestId = randomBytes(16);
  const o = s.relay.offer(requestId, 'TV-1', LOOPBACK);
  if (!o.ok) return t.fail('the offer was refused');

  // An unknown request: no challenge at all (the server holds no key to prove).
  const unknown = await plain(t, port);
  unknown.channel.send({
    type: FrameType.RELAY_LEG_HELLO,
    role: RelayRole.CLIENT,
    equipmentId: '',
    requestId: randomBytes(16),
    nonce: randomBytes(16),
  });
  await t.throwsAsync(unknown.channel.next(5_000));

  // The request ID from the NOTIFY and a key of its own: the server's proof does not verify under
  // it, and its own proof is refused.
  const observer = await plain(t, port);
  const nonce = randomBytes(16);
  observer.channel.send({ type: FrameType.RELAY_LEG_HELLO, role: RelayRole.CLIENT, equipmentId: '', requestId, nonce });
  const ch = await observer.channel.next(5_000);
  if (ch.type !== FrameType.RELAY_LEG_CHALLENGE) return t.fail('no challenge');
  const guess = randomBytes(16);
  t.notDeepEqual(ch.proof, relayLegProof(guess, 'server', requestId, nonce, ch.nonce));
  t.deepEqual(ch.proof, relayLegProof(o.joinToken, 'server', requestId, nonce, ch.nonce), 'the server proved the join token');
  observer.channel.send({ type: FrameType.RELAY_LEG_JOIN, proof: relayLegProof(guess, 'joiner', requestId, nonce, ch.nonce) });
  await waitUntil(() => closed(observer.socket), 'the server to close the guessed join');
  t.is(s.relay.counters.get('refusedToken'), 1);

  // A proof made for one connection (its server nonce), sent on another: refused.
  const first = await plain(t, port);
  first.channel.send({ type: FrameType.RELAY_LEG_HELLO, role: RelayRole.CLIENT, equipmentId: '', requestId, nonce });
  const chA = await first.channel.next(5_000);
  if (chA.type !== FrameType.RELAY_LEG_CHALLENGE) return t.fail('no challenge');
  const seenOnTheWire = relayLegProof(o.joinToken, 'joiner', requestId, nonce, chA.nonce);
  const replay = await plain(t, port);
  replay.channel.send({ type: FrameType.RELAY_LEG_HELLO, role: RelayRole.CLIENT, equipmentId: '', requestId, nonce });
  t.like(await replay.channel.next(5_000), { type: FrameType.RELAY_LEG_CHALLENGE });
  replay.channel.send({ type: FrameType.RELAY_LEG_JOIN, proof: seenOnTheWire });
  await waitUntil(() => closed(replay.socket), 'the server to close the replayed join');
  t.is(s.relay.counters.get('refusedToken'), 2);
  first.socket.destroy();

  // The real client and device join on plain legs and pair.
  const signal = AbortSignal.timeout(LONG_MS);
  const [c, d] = await Promise.all([
    joinRelayLeg({ host: LOOPBACK, port, requestId, key: o.joinToken, role: 'client', pairTimeoutMs: 5_000, signal }),
    joinRelayLeg({
      host: LOOPBACK,
      port,
      requestId,
      key: deriveRegistrationKey(pki.masterKey, 'TV-1'),
      role: 'device',
      equipmentId: 'TV-1',
      pairTimeoutMs: 5_000,
      signal,
    }),
  ]);
  t.truthy(c && d, 'both legs paired');
  t.teardown(() => (c?.destroy(), d?.destroy()));
  const got = new Promise<string>((resolve) => d!.once('data', (b: Buffer) => resolve(b.toString())));
  d!.resume();
  c!.write('through a plain leg');
  t.is(await got, 'through a plain leg');
  t.is(s.relay.counters.get('paired'), 1);
  t.is(s.broker.counters.get('relayLegs'), 2, 'the two that paired');
  t.is(s.broker.counters.get('relayLegsRefused'), 4, 'the unknown request, the guess, the replay, the leg that left without a proof');
});

test('a plain device leg needs K_reg: another key is refused before the relay sees it', async (t) => {
  const s = await startServer(t, pki, { relay: { joinTimeoutMs: LONG_MS } });
  const port = s.tlsAddress().port;
  const requestId = randomBytes(16);
  t.true(s.relay.offer(requestId, 'TV-1', LOOPBACK).ok);
  const r = await joinRelayLeg({
    host: LOOPBACK,
    port,
    requestId,
    key: deriveRegistrationKey(randomBytes(32), 'TV-1'),
    role: 'device',
    equipmentId: 'TV-1',
    pairTimeoutMs: 5_000,
    signal: AbortSignal.timeout(LONG_MS),
  });
  t.is(r, null, "the server's proof does not verify under a wrong key: the joiner goes to TLS instead");
  // Joining with the wrong key anyway (a hand-made leg): refused and counted.
  const leg = await plain(t, port);
  const nonce = randomBytes(16);
  leg.channel.send({ type: FrameType.RELAY_LEG_HELLO, role: RelayRole.DEVICE, equipmentId: 'TV-1', requestId, nonce });
  const ch = await leg.channel.next(5_000);
  if (ch.type !== FrameType.RELAY_LEG_CHALLENGE) return t.fail('no challenge');
  leg.channel.send({ type: FrameType.RELAY_LEG_JOIN, proof: relayLegProof(randomBytes(32), 'joiner', requestId, nonce, ch.nonce) });
  await waitUntil(() => closed(leg.socket), 'the server to close the wrong join');
  t.true(s.broker.counters.get('relayLegsRefused') >= 1);
  t.is(s.relay.counters.get('paired'), 0);
});

test('a joiner does not pair through someone posing as the server: a challenge it cannot verify sends it to TLS', async (t) => {
  // A fake "server" that answers every leg with a challenge made under a key of its own.
  const fake = netServer((sock) => {
    sock.on('error', () => undefined);
    const ch = new FrameChannel(sock);
    void ch.next(5_000).then(
      (h) => {
        if (h.type !== FrameType.RELAY_LEG_HELLO) return;
        const nonce = randomBytes(16);
        ch.send({
          type: FrameType.RELAY_LEG_CHALLENGE,
          nonce,
          proof: relayLegProof(randomBytes(16), 'server', h.requestId, h.nonce, nonce),
        });
        void ch.next(5_000).then(
          () => ch.send({ type: FrameType.RELAY_PAIRED }),
          () => undefined,
        );
      },
      () => undefined,
    );
  });
  await new Promise<void>((r) => fake.listen(0, LOOPBACK, r));
  t.teardown(() => fake.close());
  const port = (fake.address() as { port: number }).port;
  const r = await joinRelayLeg({
    host: LOOPBACK,
    port,
    requestId: randomBytes(16),
    key: randomBytes(16),
    role: 'client',
    pairTimeoutMs: 5_000,
    signal: AbortSignal.timeout(LONG_MS),
  });
  t.is(r, null);
});
