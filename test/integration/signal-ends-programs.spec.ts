/**
 * Issue 20: the agent and the client end promptly on one SIGTERM or SIGINT, exit 0, also with a
 * live tunnel open (a tunnel does not hold the process: it is closed).
 */
import test, { type ExecutionContext } from 'ava';
import { connect as netConnect, type Socket } from 'node:net';
import { freePort } from '../../scripts/lib/free-port.js';
import { startProgram, type Program } from '../../scripts/lib/program.js';
import { echoService, startFlow, waitForStderr, type Flow } from '../helpers/flow.js';

/** "Promptly": no grace period applies to these programs; this leaves room for a loaded machine. */
const STOP_BOUND_MS = 3_000;
const GIVE_UP_MS = 20_000;

async function flow(t: ExecutionContext): Promise<Flow> {
  const echo = await echoService(t);
  return startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
}

/** A local connection through `--listen`, with one echo round trip done: the tunnel is live. */
async function liveLocalConnection(t: ExecutionContext, port: number): Promise<Socket> {
  const s = netConnect({ host: '127.0.0.1', port });
  t.teardown(() => s.destroy());
  s.on('error', () => undefined);
  s.setEncoding('utf8');
  s.write('ping\n');
  await new Promise<void>((resolve, reject) => {
    s.once('data', (d: string) => (d === 'ping\n' ? resolve() : reject(new Error(`echoed ${d}`))));
    s.once('close', () => reject(new Error('closed before the echo')));
  });
  return s;
}

async function listenClient(t: ExecutionContext, f: Flow): Promise<{ client: Program; port: number }> {
  const port = await freePort();
  const client = startProgram('client', f.clientArgs('echo', ['--listen', `127.0.0.1:${port}`]));
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/);
  return { client, port };
}

/** Signal once; the exit code and how long it took ("still running" if it did not end). */
async function signalOnce(p: Program, signal: NodeJS.Signals): Promise<{ code: number | null | 'still running'; tookMs: number }> {
  const at = Date.now();
  p.child.kill(signal);
  const code = await Promise.race([
    p.exited,
    new Promise<'still running'>((r) => setTimeout(() => r('still running'), GIVE_UP_MS).unref()),
  ]);
  return { code, tookMs: Date.now() - at };
}

test('peerlink connect --listen with a live tunnel: SIGTERM ends it promptly, exit 0', async (t) => {
  const f = await flow(t);
  const { client, port } = await listenClient(t, f);
  const local = await liveLocalConnection(t, port);
  const r = await signalOnce(client, 'SIGTERM');
  t.log(`exit ${String(r.code)} after ${r.tookMs} ms`);
  t.is(r.code, 0);
  t.true(r.tookMs <= STOP_BOUND_MS);
  await new Promise<void>((resolve) => (local.destroyed ? resolve() : local.once('close', () => resolve())));
});

test('peerlink connect --stdio with a live tunnel: SIGINT ends it promptly, exit 0', async (t) => {
  const f = await flow(t);
  const client = startProgram('client', f.clientArgs('echo', ['--stdio']), { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => client.stop().then(() => undefined));
  // stdin stays open: the tunnel is live until the signal.
  client.child.stdin!.write('ping\n');
  await new Promise<void>((resolve) => client.child.stdout!.once('data', () => resolve()));
  const r = await signalOnce(client, 'SIGINT');
  t.log(`exit ${String(r.code)} after ${r.tookMs} ms`);
  t.is(r.code, 0);
  t.true(r.tookMs <= STOP_BOUND_MS);
});

test('peerlink-agent with a live tunnel: SIGTERM ends it promptly, exit 0', async (t) => {
  const f = await flow(t);
  const { port } = await listenClient(t, f);
  const local = await liveLocalConnection(t, port);
  const r = await signalOnce(f.agent, 'SIGTERM');
  t.log(`exit ${String(r.code)} after ${r.tookMs} ms`);
  t.is(r.code, 0);
  t.true(r.tookMs <= STOP_BOUND_MS);
  t.truthy(f.agent.lines.find((l) => l.msg === 'stopped'));
  await new Promise<void>((resolve) => (local.destroyed ? resolve() : local.once('close', () => resolve())));
});
