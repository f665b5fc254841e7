/** npm run bundle: one file per program that plain node runs with no node_modules; scripts/install lays it out DESTDIR-style. */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBundle, REPO_ROOT } from '../../scripts/bundle.js';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { runProcess } from '../helpers/run-process.js';

const run = promisify(execFile);

test('the bundled agent runs alone (no node_modules anywhere above it) and installs into a target root', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bundle-'));
  try {
    const b = await buildBundle(join(dir, 'bundle'));
    const agentFile = b.files.find((f) => f.file === 'peerlink-agent.cjs');
    t.truthy(agentFile);
    t.log(`peerlink-agent.cjs: ${(agentFile!.bytes / 1024).toFixed(1)} KiB (gzip ${(agentFile!.gzipBytes / 1024).toFixed(1)} KiB)`);
    // /tmp has no node_modules above it: a lone copy must run.
    const lone = join(dir, 'lone.cjs');
    await copyFile(join(b.dir, 'peerlink-agent.cjs'), lone);
    const setup = await createLoopbackSetup({ dir: join(dir, 'cfg'), services: { echo: '127.0.0.1:7' } });
    const ok = await runProcess(process.execPath, [lone, 'check-config', '--config', setup.agentConfig]);
    t.is(ok.code, 0, ok.stderr);
    t.regex(ok.stdout, /ok \(equipment DEMO-TV-0001, services echo\)/);
    const bad = await runProcess(process.execPath, [lone, 'check-config', '--config', join(dir, 'missing.toml')]);
    t.is(bad.code, 3);

    const root = join(dir, 'root');
    await run(join(REPO_ROOT, 'scripts', 'install'), [b.dir], { env: { ...process.env, DESTDIR: root } });
    t.true((await stat(join(root, 'usr/lib/peerlink/peerlink-agent.cjs'))).isFile());
    t.is(await readlink(join(root, 'usr/bin/peerlink-agent')), '../lib/peerlink/peerlink-agent.cjs');
    t.true((await lstat(join(root, 'usr/lib/systemd/system/peerlink-agent.service'))).isFile());
    t.is(
      await readFile(join(root, 'etc/peerlink/agent.toml'), 'utf8'),
      await readFile(join(REPO_ROOT, 'config/agent.example.toml'), 'utf8'),
    );
    const unit = await readFile(join(root, 'usr/lib/systemd/system/peerlink-agent.service'), 'utf8');
    t.regex(unit, /^ExecStart=\/usr\/bin\/node (--[\w-]+(=\S+)? )*\/usr\/lib\/peerlink\/peerlink-agent\.cjs /m);
    // a second install keeps the technician's settings
    const again = await run(join(REPO_ROOT, 'scripts', 'install'), [b.dir], { env: { ...process.env, DESTDIR: root } });
    t.regex(again.stdout, /keeping existing .*agent\.toml/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
