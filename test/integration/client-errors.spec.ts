/** Each failure a user meets gives a distinct error code and exit code (docs/usage.md: exit codes). */
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCa } from '../../agent/pki/ca.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, sharedScope, startFlow, tempDir, type Flow } from '../helpers/flow.js';
import { runNode, type Run } from '../helpers/run-process.js';

const run = (program: string, args: readonly string[]): Promise<Run> => runNode(program, args);

const connectArgs = (flow: Flow, service: string, patch: (a: string[]) => string[] = (a) => a): string[] =>
  patch(flow.clientArgs(service, ['--stdio']));

let flow: Flow;
let dir: string;

const ctx = sharedScope();
test.after.always(() => ctx.close());

test.before(async () => {
  // One server and agent for all cases; each case is a separate client process.
  const echo = await echoService(ctx);
  const closedPort = await freePort();
  flow = await startFlow(ctx, {
    services: { echo: `127.0.0.1:${echo.port}`, dead: `127.0.0.1:${closedPort}` },
    serverExtra: '[requests]\nattach_timeout_ms = 1500',
  });
  dir = await tempDir(ctx);
});

test('unknown equipment ID: exit 10, PEERLINK_ERR_UNKNOWN_DEVICE', async (t) => {
  const r = await run(
    PROGRAMS.client,
    connectArgs(flow, 'echo', (a) => a.map((x) => (x === flow.setup.equipmentId ? 'NO-SUCH-DEVICE' : x))),
  );
  t.is(r.code, 10, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_UNKNOWN_DEVICE/);
});

test('wrong password: exit 13, PEERLINK_ERR_AUTH_FAILED', async (t) => {
  const wrong = join(dir, 'wrong-password.txt');
  await writeFile(wrong, 'AAAA-BBBB-CCCC-DDDD-EEEE\n', { mode: 0o600 }); // a password file others can read is refused (P7b)
  const r = await run(
    PROGRAMS.client,
    connectArgs(flow, 'echo', (a) => a.map((x) => (x === flow.setup.passwordFile ? wrong : x))),
  );
  t.is(r.code, 13, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_AUTH_FAILED/);
});

test('service not in the allow-list: exit 16, PEERLINK_ERR_SERVICE_REFUSED', async (t) => {
  const r = await run(PROGRAMS.client, connectArgs(flow, 'telnet'));
  t.is(r.code, 16, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_SERVICE_REFUSED/);
});

test('allowed service that is not running: exit 17, PEERLINK_ERR_SERVICE_UNAVAILABLE', async (t) => {
  const r = await run(PROGRAMS.client, connectArgs(flow, 'dead'));
  t.is(r.code, 17, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_SERVICE_UNAVAILABLE/);
});

test('server certificate from another CA: exit 15, PEERLINK_ERR_UNTRUSTED_CERTIFICATE', async (t) => {
  const otherCa = join(dir, 'other-ca.pem');
  await writeFile(otherCa, createCa({ commonName: 'someone else' }).certPem);
  const r = await run(
    PROGRAMS.client,
    connectArgs(flow, 'echo', (a) => a.map((x) => (x === flow.setup.caFile ? otherCa : x))),
  );
  t.is(r.code, 15, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_UNTRUSTED_CERTIFICATE/);
});

test('server not reachable: exit 18, PEERLINK_ERR_SERVER_UNREACHABLE', async (t) => {
  const port = await freePort();
  const r = await run(
    PROGRAMS.client,
    connectArgs(flow, 'echo', (a) => a.map((x) => (x === `127.0.0.1:${flow.setup.tlsPort}` ? `127.0.0.1:${port}` : x))),
  );
  t.is(r.code, 18, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_SERVER_UNREACHABLE/);
});

test('usage errors: exit 2 and the usage text', async (t) => {
  const r = await run(PROGRAMS.client, ['connect', 'X', '--server', '127.0.0.1:1']);
  t.is(r.code, 2);
  t.regex(r.stderr, /usage: peerlink connect/);
  for (const bad of ['7400', '7400,7400', '7400,70000', 'a,b']) {
    const p = await run(PROGRAMS.client, [
      'connect',
      'X',
      '--server',
      '127.0.0.1:1',
      '--ca',
      'c',
      '--service',
      's',
      '--stdio',
      '--probe-ports',
      bad,
    ]);
    t.is(p.code, 2, bad);
    t.regex(p.stderr, /--probe-ports: expected two different ports/);
  }
});

test.serial('registered device that does not answer: exit 12, PEERLINK_ERR_DEVICE_NO_ANSWER', async (t) => {
  // A hung agent: registered, but deaf to the notification.
  flow.agent.child.kill('SIGSTOP');
  t.teardown(() => void flow.agent.child.kill('SIGCONT'));
  const r = await run(PROGRAMS.client, connectArgs(flow, 'echo'));
  flow.agent.child.kill('SIGCONT');
  t.is(r.code, 12, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_DEVICE_NO_ANSWER/);
});

test('a device that stopped registering is reported offline: exit 11, PEERLINK_ERR_DEVICE_STALE', async (t) => {
  const echo = await echoService(t);
  const f = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, serverExtra: '[registry]\nstale_after_ms = 1000' });
  await f.agent.stop();
  await new Promise((r) => setTimeout(r, 1300));
  const r = await run(PROGRAMS.client, f.clientArgs('echo', ['--stdio']));
  t.is(r.code, 11, r.stderr);
  t.regex(r.stderr, /PEERLINK_ERR_DEVICE_STALE/);
  t.regex(r.stderr, /last seen \d+ s ago/);
});

test('a bad settings file stops the agent with exit 3 naming the file and every bad key', async (t) => {
  const d = await tempDir(t);
  const file = join(d, 'agent.toml');
  await writeFile(
    file,
    'identity_file = "x.toml"\nequipment_id = "TV-1"\n[registration]\ninterval_ms = 5\n[server]\nhost = "h"\nudp_port = "seven"\n[services]\nhttp = "nowhere"\n',
  );
  const r = await run(PROGRAMS.agent, ['check-config', '--config', file]);
  t.is(r.code, 3, r.stderr);
  for (const key of ['equipment_id', 'registration.interval_ms', 'server.udp_port', 'services.http']) {
    t.true(r.stderr.includes(`${file}: ${key}`), `missing ${key} in: ${r.stderr}`);
  }
});
