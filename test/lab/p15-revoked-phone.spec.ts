/**
 * P15 in the NAT lab (issue 19): a phone and the owner's laptop, both behind a NAT, paired with a
 * device behind another NAT. The phone holds a session open; the owner revokes the phone from the
 * laptop. The phone's session ends (nothing it sends is answered any more; --stdio keeps the
 * process until its stdin closes), its next connect is refused with ACCESS_REVOKED (exit 25)
 * through the real routers, and the laptop still gets in.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runClient, SERVER_TLS_PORT } from '../../scripts/lab/cell.js';
import { startRunningLab } from '../../scripts/lab/running-lab.js';
import { ADDR } from '../../scripts/lab/topology.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { labTest } from '../helpers/lab-test.js';

const EXIT_ACCESS_REVOKED = 25;
/** The agent notices the change within its 1 s poll; the session is checked after this much. */
const SESSION_END_MS = 3_000;

labTest('a revoked phone behind a NAT: its session ends and its next request gets ACCESS_REVOKED; the laptop still connects', async (t) => {
  const run = await startRunningLab({ client: { nat: 'port-restricted' }, device: { nat: 'symmetric' } });
  t.teardown(() => run.stop());
  const dirs = await mkdtemp(join(tmpdir(), 'peerlink-lab-pairings-'));
  t.teardown(() => rm(dirs, { recursive: true, force: true }));
  const ns = run.lab.client.host;
  const id = run.setup.equipmentId;
  const server = ['--server', `${ADDR.server}:${SERVER_TLS_PORT}`, '--ca', run.setup.caFile];
  const phone = ['--pairing-dir', join(dirs, 'phone')];
  const laptop = ['--pairing-dir', join(dirs, 'laptop')];
  const cli = (args: readonly string[]) => runClient(ns, args, Buffer.alloc(0), 60_000);

  for (const [dir, name] of [
    [phone, 'phone'],
    [laptop, 'laptop'],
  ] as const) {
    const r = await cli(['pair', id, '--name', name, '--password-file', run.setup.passwordFile, ...server, ...dir]);
    t.is(r.code, 0, `pair ${name}: ${r.stderr}`);
  }

  // The phone's session in progress: --stdio with stdin held open.
  const session = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, PROGRAMS.client, 'connect', id, ...server, ...phone, '--service', 'echo', '--stdio'],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  t.teardown(() => void session.kill('SIGKILL'));
  let echoed = '';
  let stderr = '';
  session.stdout.on('data', (d: Buffer) => (echoed += d.toString()));
  session.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  session.stdin.write('alive');
  const until = Date.now() + 30_000;
  while (!echoed.includes('alive') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.is(echoed, 'alive', `the phone's session works through both NATs: ${stderr}`);

  const rv = await cli(['device', 'revoke', id, 'phone', ...server, ...laptop]);
  t.is(rv.code, 0, rv.stderr);
  // The session is dead: what the phone sends now gets no echo (a live session answers in milliseconds).
  await new Promise((r) => setTimeout(r, SESSION_END_MS));
  session.stdin.write('after');
  await new Promise((r) => setTimeout(r, SESSION_END_MS));
  t.is(echoed, 'alive', `nothing crossed the revoked phone's session after the revocation (${stderr.trim().split('\n').pop()})`);

  const again = await cli(['connect', id, ...server, ...phone, '--service', 'echo', '--stdio']);
  t.is(again.code, EXIT_ACCESS_REVOKED, again.stderr);
  const other = await runClient(ns, ['connect', id, ...server, ...laptop, '--service', 'echo', '--stdio'], Buffer.from('laptop'), 60_000);
  t.is(other.code, 0, other.stderr);
  t.is(other.stdoutBytes, 6);
});
