/**
 * `peerlink connect --listen` with more local connections busy at once than a session's streams
 * (SESSION_MAX_STREAMS, 128, the device's cap): the client opens no stream past the cap, it holds
 * the rest until a stream is gone (agent/session/mux-held.ts). All 200 connections are answered,
 * the device refuses none, and the one session stays up. Before, the device refused the 72 extra
 * with DEVICE_BUSY (their local connections closed unanswered).
 */
import test from 'ava';
import { connect, createServer, type Socket } from 'node:net';
import { startProgram } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { SESSION_MAX_STREAMS } from '../../agent/protocol/session-streams.js';
import { waitForStderr, type Scope } from '../helpers/flow.js';
import { startMeteredFlow } from '../helpers/sessions.js';
import { waitUntil } from '../helpers/harness.js';

const CONNECTIONS = 200;

/** An echo service that, once gated, holds every connection unanswered until opened again; counts them. */
async function gatedEcho(t: Scope): Promise<{ port: number; gate(closed: boolean): void; open(): number; most(): number }> {
  let gated = false;
  let open = 0;
  let most = 0;
  const waiting: Socket[] = [];
  const server = createServer((s) => {
    s.on('error', () => undefined);
    most = Math.max(most, ++open);
    s.once('close', () => open--);
    if (gated) waiting.push(s);
    else s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return {
    port: (server.address() as { port: number }).port,
    gate(closed) {
      gated = closed;
      if (!closed) for (const s of waiting.splice(0)) s.pipe(s);
    },
    open: () => open,
    most: () => most,
  };
}

/** Send `payload`, half-close, collect the answer until close ('' when reset). */
function exchange(port: number, payload: string): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const s = connect(port, '127.0.0.1', () => s.end(payload));
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(out));
  });
}

test(`${CONNECTIONS} local connections busy at once through --listen: all answered, none refused, one session`, async (t) => {
  const echo = await gatedEcho(t);
  const flow = await startMeteredFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const port = await freePort();
  const client = startProgram('client', flow.clientArgs('echo', ['--listen', `127.0.0.1:${port}`, '--session-idle-ms', '60000']));
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/);
  // The session up first (before it, local connections wait for it, at most 16 at once: P10).
  t.is(await exchange(port, 'warm'), 'warm');
  echo.gate(true);
  const answers = Array.from({ length: CONNECTIONS }, (_, i) => exchange(port, `connection-${i}-`.repeat(10)));
  // Every stream the session may carry reaches the service, which holds them all.
  await waitUntil(() => echo.open() >= SESSION_MAX_STREAMS, 'the service to hold a session full of streams', 20_000);
  echo.gate(false);
  const got = await Promise.all(answers);
  const unanswered = got.filter((a, i) => a !== `connection-${i}-`.repeat(10)).length;
  t.is(unanswered, 0, `${unanswered} of ${CONNECTIONS} local connections were not answered`);
  // (+1: the service may see a stream's connection close just after the device counted it gone.)
  t.true(echo.most() <= SESSION_MAX_STREAMS + 1, `the service saw ${echo.most()} connections at once`);
  t.is(flow.agent.lines.filter((l) => String(l.msg).includes('too many streams')).length, 0, 'the device refused streams');
  t.is(flow.agent.lines.filter((l) => l.msg === 'S209 session ended').length, 0, 'the session ended');
  t.is(await flow.rendezvous(), 1, 'one rendezvous: the same session throughout');
  t.is(await exchange(port, 'after'), 'after');
});
