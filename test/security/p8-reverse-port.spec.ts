/**
 * P8: the agent's reverse port (which a router may expose to the whole Internet) gives nothing to
 * a stranger. A connection must first name an authorised request in progress with a token only the
 * client and the device can compute (HMAC under the access key); anything else is dropped and
 * counted, and silence is cut off at the token timeout. Even a correct token only leads to the
 * TLS-PSK handshake of P4, so it grants nothing by itself.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { createReverseListener } from '../../agent/device/reverse-listener.js';
import { silentLogger } from '../../agent/common/logger.js';
import { REVERSE_TOKEN_BYTES, reverseToken } from '../../agent/protocol/keys.js';
import { LOOPBACK, waitUntil } from '../helpers/harness.js';

async function listener(t: ExecutionContext, tokenTimeoutMs = 5000) {
  const l = createReverseListener({ host: LOOPBACK, port: 0, logger: silentLogger(), tokenTimeoutMs });
  await l.start();
  t.teardown(() => l.stop());
  return l;
}

function closed(s: Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: LOOPBACK, port }, () => resolve(s));
    s.on('error', reject);
  });
}

test('P8: a wrong token (random, or for another nonce) is dropped and counted; the awaited session does not get it', async (t) => {
  const l = await listener(t);
  const accessKey = randomBytes(32);
  const nonce = randomBytes(16);
  const handed: Socket[] = [];
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  void l.await(reverseToken(accessKey, nonce), ac.signal).then(
    (s) => handed.push(s),
    () => undefined,
  );
  for (const token of [randomBytes(REVERSE_TOKEN_BYTES), reverseToken(accessKey, randomBytes(16)), reverseToken(randomBytes(32), nonce)]) {
    const s = await open(l.port());
    s.on('error', () => undefined);
    s.write(token);
    await closed(s);
  }
  t.is(l.counters.get('unknownToken'), 3);
  t.is(handed.length, 0);
  // The genuine token still reaches the session (failed attempts do not use it up).
  const good = await open(l.port());
  t.teardown(() => good.destroy());
  good.write(reverseToken(accessKey, nonce));
  await waitUntil(() => handed.length === 1, 'the genuine connection to be handed over', 2000);
  t.is(l.counters.get('accepted'), 1);
  handed[0]!.destroy();
});

test('P8: a token is single use: a second connection with it is dropped', async (t) => {
  const l = await listener(t);
  const token = reverseToken(randomBytes(32), randomBytes(16));
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const got = l.await(token, ac.signal);
  const first = await open(l.port());
  t.teardown(() => first.destroy());
  first.write(token);
  (await got).destroy();
  const second = await open(l.port());
  second.on('error', () => undefined);
  second.write(token);
  await closed(second);
  t.is(l.counters.get('unknownToken'), 1);
});

test('P8: a connection that says nothing is cut off at the token timeout; one that stops mid-token too', async (t) => {
  const l = await listener(t, 300);
  const silent = await open(l.port());
  silent.on('error', () => undefined);
  const partial = await open(l.port());
  partial.on('error', () => undefined);
  partial.write(randomBytes(REVERSE_TOKEN_BYTES - 1));
  await Promise.all([closed(silent), closed(partial)]);
  t.is(l.counters.get('noToken'), 2);
});

test('P8: after the session stops waiting (aborted), its token is no longer accepted', async (t) => {
  const l = await listener(t);
  const token = reverseToken(randomBytes(32), randomBytes(16));
  const ac = new AbortController();
  const waiting = l.await(token, ac.signal);
  ac.abort();
  await t.throwsAsync(waiting);
  const s = await open(l.port());
  s.on('error', () => undefined);
  s.write(token);
  await closed(s);
  t.is(l.counters.get('unknownToken'), 1);
  t.is(l.counters.get('accepted'), 0);
});
