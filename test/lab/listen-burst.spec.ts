/**
 * Issue 15's lab finding, turned around: a browser-like burst through one `--listen` port across
 * real NAPT routers. 40 parallel connections and then 20 sequential ones all come back whole, and
 * the server sees one connection request for all of them (they are streams of one session).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startRunningLab } from '../../scripts/lab/running-lab.js';
import { DIST, startProgram } from '../../scripts/lib/program.js';
import { waitForStderr } from '../helpers/flow.js';
import { labTest } from '../helpers/lab-test.js';

const LISTEN_PORT = 8080;

labTest('40 parallel and 20 sequential connections through one --listen port across NATs: all answered, one rendezvous', async (t) => {
  const lab = await startRunningLab({ client: { nat: 'none' }, device: { nat: 'port-restricted' } });
  t.teardown(() => lab.stop());
  const args = [...lab.clientArgs.filter((a) => a !== '--stdio'), '--listen', `127.0.0.1:${LISTEN_PORT}`, '--accept', '0.0.0.0:5000'];
  const client = startProgram('client', args, { netns: lab.lab.client.host });
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/, 30_000);

  const burst = spawn(
    'ip',
    [
      'netns',
      'exec',
      lab.lab.client.host,
      process.execPath,
      join(DIST, 'test', 'helpers', 'echo-burst.js'),
      String(LISTEN_PORT),
      '40',
      '20',
      '16384',
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  burst.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise((r) => burst.once('close', r));
  const r = JSON.parse(out) as { parallelOk: number; parallelMs: number; sequentialOk: number };
  t.log(`40 parallel in ${Math.round(r.parallelMs)} ms: ${r.parallelOk} answered; 20 sequential: ${r.sequentialOk} answered`);
  t.is(r.parallelOk, 40);
  t.is(r.sequentialOk, 20);
  t.is(lab.server.lines.filter((l) => l.msg === 'S203 connection request received').length, 1, 'one rendezvous for the 60 connections');
});
