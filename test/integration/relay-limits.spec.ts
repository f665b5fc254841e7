/** The relay's limits are settings and are enforced: sessions, bytes per second, duration. */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow, type Flow } from '../helpers/flow.js';

async function relayedClient(flow: Flow, extra: readonly string[] = []): Promise<ChildProcessWithoutNullStreams> {
  // A closed advertised port: the device's direct dial is refused, so the relay is the only path.
  const closedPort = await freePort();
  return spawn(
    process.execPath,
    [PROGRAMS.client, ...flow.clientArgs('echo', ['--stdio', '--advertise-port', String(closedPort), ...extra])],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
}

function collect(child: ChildProcessWithoutNullStreams): { out: () => number; err: () => string; exit: Promise<number | null> } {
  let out = 0;
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.length));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { out: () => out, err: () => err, exit: new Promise((r) => child.once('exit', r)) };
}

test('max_sessions = 0 refuses the relay: the client reports PEER_TIMEOUT', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}` },
    directDialOnly: true,
    serverExtra: '[relay]\nmax_sessions = 0',
  });
  const child = await relayedClient(flow, ['--peer-timeout-ms', '6000']);
  t.teardown(() => void child.kill('SIGKILL'));
  const c = collect(child);
  child.stdin.end('x');
  t.is(await c.exit, 19, c.err());
  t.regex(c.err(), /PEERLINK_ERR_PEER_TIMEOUT/);
  await flow.server.waitFor((l) => l.msg === 'relay full; refusing a session');
});

test('bytes_per_second caps each direction of a relayed session', async (t) => {
  const LIMIT = 64 * 1024;
  const SIZE = 256 * 1024;
  const echo = await echoService(t);
  const flow = await startFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}` },
    directDialOnly: true,
    serverExtra: `[relay]\nbytes_per_second = ${LIMIT}`,
  });
  const child = await relayedClient(flow);
  t.teardown(() => void child.kill('SIGKILL'));
  const c = collect(child);
  const t0 = performance.now();
  child.stdin.end(randomBytes(SIZE));
  t.is(await c.exit, 0, c.err());
  const seconds = (performance.now() - t0) / 1000;
  t.is(c.out(), SIZE);
  const rate = SIZE / seconds;
  t.log(`${SIZE} bytes echoed through a ${LIMIT} B/s relay in ${seconds.toFixed(1)} s (${Math.round(rate)} B/s)`);
  // The first second's window lets LIMIT through at once, so the floor is (SIZE / LIMIT) - 1 seconds.
  t.true(seconds >= SIZE / LIMIT - 1, `${seconds} s is faster than the limit allows`);
});

test('max_duration_ms ends a relayed session', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}` },
    directDialOnly: true,
    serverExtra: '[relay]\nmax_duration_ms = 1500',
  });
  const child = await relayedClient(flow);
  t.teardown(() => void child.kill('SIGKILL'));
  const c = collect(child);
  child.stdin.write('hello'); // and keep stdin open: only the relay's limit can end this session
  const t0 = performance.now();
  const code = await Promise.race([c.exit, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
  t.not(
    code,
    'hung',
    `the session outlived the relay duration limit; client: ${c.err()}; server: ${flow.server.lines.map((l) => l.msg).join(' / ')}`,
  );
  t.true(performance.now() - t0 >= 1000);
  t.is(code, 22, 'a cut session is reported as PEERLINK_ERR_TUNNEL_BROKEN, not as success');
  t.true(flow.server.lines.some((l) => l.msg === 'relay session cut at its duration limit'));
});
