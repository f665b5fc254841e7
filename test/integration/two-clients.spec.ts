/** Two clients to two services of one device at the same time. */
import test from 'ava';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { startProgram } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow, waitForStderr } from '../helpers/flow.js';

function exchange(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const s = connect(port, '127.0.0.1', () => s.end(payload));
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
}

test('two clients reach two services concurrently and each gets its own service', async (t) => {
  const echo = await echoService(t);
  const web = createServer((_req, res) => res.end('web-service-answer'));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => web.close(() => r())));
  const webPort = (web.address() as { port: number }).port;
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}`, http: `127.0.0.1:${webPort}` } });

  const [l1, l2] = [await freePort(), await freePort()];
  const c1 = startProgram('client', flow.clientArgs('echo', ['--listen', `127.0.0.1:${l1}`]));
  const c2 = startProgram('client', flow.clientArgs('http', ['--listen', `127.0.0.1:${l2}`]));
  t.teardown(() => Promise.all([c1.stop(), c2.stop()]).then(() => undefined));
  await Promise.all([waitForStderr(c1, /serving/), waitForStderr(c2, /serving/)]);

  const results = await Promise.all([
    ...Array.from({ length: 3 }, (_, i) => exchange(l1, `echo-${i}-`.repeat(1000))),
    ...Array.from({ length: 3 }, () => exchange(l2, 'GET / HTTP/1.0\r\n\r\n')),
  ]);
  for (let i = 0; i < 3; i++) t.is(results[i], `echo-${i}-`.repeat(1000));
  for (let i = 3; i < 6; i++) t.regex(results[i]!, /web-service-answer$/);
});
