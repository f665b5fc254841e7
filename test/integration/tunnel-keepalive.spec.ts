/**
 * Every tunnel connection has TCP keepalive on, at both ends: an idle session keeps its NAT
 * mappings, and a peer that vanished without FIN or RST is noticed. Read from the kernel (ss).
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow } from '../helpers/flow.js';

test('the device’s tunnel connection has TCP keepalive at both ends', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` }, directDialOnly: true });
  const port = await freePort();
  const client = spawn(
    process.execPath,
    [PROGRAMS.client, ...flow.clientArgs('echo', ['--stdio', '--accept', `127.0.0.1:${port}`, '--advertise-port', String(port)])],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  t.teardown(() => client.kill('SIGKILL'));
  // stdin stays open: the session is idle, as an ssh prompt would be.
  await new Promise<void>((resolve, reject) => {
    let err = '';
    client.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (/connected directly/.test(err)) resolve();
    });
    client.once('exit', (code) => reject(new Error(`client exited ${code}: ${err}`)));
  });
  // ss shows one timer per socket: a retransmission timer hides keepalive while bytes are in flight.
  let lines: string[] = [];
  for (let i = 0; i < 50; i++) {
    const ss = execFileSync('ss', ['-tnoe', 'state', 'established', `( sport = :${port} or dport = :${port} )`]).toString();
    lines = ss.split('\n').filter((l) => l.includes(`:${port}`));
    if (lines.length === 2 && lines.every((l) => /timer:\(keepalive,/.test(l))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.is(lines.length, 2, lines.join('\n'));
  for (const l of lines) t.regex(l, /timer:\(keepalive,/, l);
});
