/**
 * Fault: the agent's state directory (state_dir: the replay mark, P12) is full — a tiny tmpfs filled
 * to the last block — and then read-only. The agent keeps serving connections and says so in its log
 * (once per outage, not per request), and says so again when it can write once more. Needs root (mount).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createLoopbackSetup, connectArgs } from '../../scripts/lib/loopback-setup.js';
import { startProgram, type Program } from '../../scripts/lib/program.js';
import { echoService, tempDir } from '../helpers/flow.js';
import { figure, runClient } from '../helpers/faults.js';
import { REPLAY_MARK_LEASE_MS } from '../../agent/device/replay-mark.js';
import { setTimeout as sleep } from 'node:timers/promises';

const isRoot = process.getuid?.() === 0;
if (!isRoot) process.stderr.write('state-dir-full.spec: SKIPPED: needs root to mount a tmpfs\n');
const rootTest = isRoot ? test : test.skip;
const CANNOT = 'cannot write the replay mark: serving on, but a restart will forget which requests were used';
const AGAIN = 'replay mark written again';

async function fill(dir: string): Promise<void> {
  // Write until the filesystem says no: every block taken.
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
  } catch {
    /* ENOSPC ends dd with a non-zero status: expected */
  }
}

const count = (p: Program, msg: string): number => p.lines.filter((l) => l.msg === msg).length;

rootTest('state directory full, then read-only: the agent keeps serving and says so; it says so when it can write again', async (t) => {
  t.timeout(90_000);
  const echo = await echoService(t);
  const dir = await tempDir(t, 'peerlink-statefull-');
  const setup = await createLoopbackSetup({ dir, services: { echo: `127.0.0.1:${echo.port}` } });
  const stateDir = join(dir, 'state');
  await mkdir(stateDir, { mode: 0o700 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'peerlink-faults', stateDir]);
  t.teardown(() => void execFileSync('umount', ['-l', stateDir]));
  await fill(stateDir);

  const server = startProgram('server', ['--config', setup.serverConfig]);
  t.teardown(() => server.stop().then(() => undefined));
  await server.waitFor((l) => l.msg === 'rendezvous server listening');
  const runtime = join(dir, 'run');
  await mkdir(runtime);
  const agent = startProgram('agent', ['--config', setup.agentConfig], { env: { ...process.env, RUNTIME_DIRECTORY: runtime } });
  t.teardown(() => agent.stop().then(() => undefined));
  await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
  const args = [...connectArgs(setup, 'echo'), '--stdio'];
  const connect = async (what: string): Promise<void> => {
    const r = await runClient(args, `${what}\n`).done;
    t.is(r.code, 0, `${what}: ${r.said}`);
    t.is(r.stdout, `${what}\n`);
  };

  await connect('full 1');
  await connect('full 2');
  const warned = await agent.waitFor((l) => l.msg === CANNOT, 10_000);
  figure(t, 'state dir full: the agent says', `${warned.msg} (${String(warned.err)})`);
  t.is(count(agent, CANNOT), 1, 'said once per outage, not per request');

  await rm(join(stateDir, 'filler'));
  await connect('space again');
  await agent.waitFor((l) => l.msg === AGAIN, 10_000);
  figure(t, 'state dir has space again: the agent says', AGAIN);

  execFileSync('mount', ['-o', 'remount,ro', stateDir]);
  // The mark written ahead covers requests for a while (replay-mark.ts): the next one after it needs a write.
  await sleep(REPLAY_MARK_LEASE_MS);
  await connect('read-only 1');
  await connect('read-only 2');
  await agent.waitFor((l) => l.msg === CANNOT && agent.lines.indexOf(l) > agent.lines.findIndex((x) => x.msg === AGAIN), 10_000);
  const last = agent.lines.findLast((l) => l.msg === CANNOT)!;
  figure(t, 'state dir read-only: the agent says', `${last.msg} (${String(last.err)})`);
  t.is(count(agent, CANNOT), 2);
  t.is(agent.child.exitCode, null, 'the agent is still running');
});
