/** --stdio: the tunnel on stdin/stdout, as ssh's ProxyCommand uses it. */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { echoService, startFlow } from '../helpers/flow.js';

test('stdin goes through the tunnel and the echo comes back on stdout; EOF ends the session', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const child = spawn(process.execPath, [PROGRAMS.client, ...flow.clientArgs('echo', ['--stdio'])], { stdio: ['pipe', 'pipe', 'pipe'] });
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
  t.is(got, data.length);
  t.is(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  t.regex(stderr, /connected directly/);
});
