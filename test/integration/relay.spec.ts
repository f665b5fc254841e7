/**
 * When the device cannot dial the client (here: the advertised port is closed), both meet at
 * the server's relay; the end-to-end channel runs inside it and the bytes arrive intact.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow } from '../helpers/flow.js';

test('a failed direct dial falls back to the relay within the direct-dial budget, and data flows end to end', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, agentExtra: '' });
  const closedPort = await freePort();
  const child = spawn(process.execPath, [PROGRAMS.client, ...flow.clientArgs('echo', ['--stdio', '--advertise-port', String(closedPort)])], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  const data = randomBytes(1024 * 1024);
  const hash = createHash('sha256');
  let got = 0;
  child.stdout.on('data', (d: Buffer) => {
    hash.update(d);
    got += d.length;
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(data);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.is(code, 0, stderr);
  t.regex(stderr, /relayed via server/);
  t.is(got, data.length);
  t.is(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  const ms = Number(/in (\d+) ms/.exec(stderr)?.[1]);
  t.log(`relayed connect in ${ms} ms`);
  await flow.agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('end-to-end channel up through the relay'));
});
