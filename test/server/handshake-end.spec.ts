/**
 * A peer that ends its side during the TLS handshake gets its connection closed at once, not
 * after the handshake deadline: the TLS socket is half-open only once secure (relayed sessions
 * need it then). Two such peers: a client that connects and closes as soon as it is secure (its
 * Finished may not have reached the server: what a TLS probe or the bench's baseline does), and a
 * stray that half-closes after a partial ClientHello.
 */
import test from 'ava';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createServerPki, LOOPBACK, Scope, startServer, waitUntil } from '../helpers/harness.js';
import { PARTIAL_CLIENT_HELLO } from '../helpers/stray-connections.js';

/** Far longer than the waits below: a connection that lived until it would fail the test. */
const HANDSHAKE_TIMEOUT_MS = 60_000;
const CLOSED_WITHIN_MS = 5_000;

const scope = new Scope();
test.after.always(() => scope.run());

async function serverOn(): Promise<{ port: number; caPem: string; handshakes: () => number }> {
  const pki = createServerPki();
  const server = await startServer(scope, pki, { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS });
  return { port: server.tlsAddress().port, caPem: pki.caPem, handshakes: () => server.broker.open.handshake };
}

test('a client that closes as soon as it is secure leaves no connection in the handshake', async (t) => {
  const s = await serverOn();
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      const c = tlsConnect({ host: LOOPBACK, port: s.port, servername: 'localhost', ca: s.caPem }, () => {
        c.destroy();
        resolve();
      });
      c.once('error', reject);
    });
  }
  await waitUntil(() => s.handshakes() === 0, 'the server to close the connections ended in their handshake', CLOSED_WITHIN_MS);
  t.is(s.handshakes(), 0);
});

test('a stray that half-closes after a partial ClientHello is closed by the server at once', async (t) => {
  const s = await serverOn();
  const closed = await new Promise<boolean>((resolve) => {
    const c = netConnect({ host: LOOPBACK, port: s.port, allowHalfOpen: true }, () => c.end(PARTIAL_CLIENT_HELLO));
    c.on('error', () => undefined);
    c.resume();
    const timer = setTimeout(() => (c.destroy(), resolve(false)), CLOSED_WITHIN_MS);
    c.once('close', () => (clearTimeout(timer), resolve(true)));
  });
  t.true(closed, `the server kept the connection past ${CLOSED_WITHIN_MS} ms (its handshake deadline is ${HANDSHAKE_TIMEOUT_MS} ms)`);
  await waitUntil(() => s.handshakes() === 0, 'the server to forget the connection', CLOSED_WITHIN_MS);
});
