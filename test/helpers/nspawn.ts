/**
 * Boot this machine's own root under systemd-nspawn (systemd 252 as PID 1, see the lab notes)
 * with a read-only tmpfs-backed root, the staged install overlaid on /usr, and a one-shot test
 * unit that runs a script and powers the container off. The host network is shared (no
 * --private-network), so a server the test starts on 127.0.0.1 is reachable from inside.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface NspawnRun {
  readonly code: number | null;
  readonly output: string;
  readonly ms: number;
}

export interface NspawnOptions {
  /** Host dir with the test's files; holds results/ afterwards. */
  readonly dir: string;
  /** A staged DESTDIR whose usr/ is laid over the container's /usr (read-only overlay). */
  readonly stagedUsr: string;
  /** Shell script run by the test unit inside the container (as root); writes to /results. */
  readonly script: string;
  /** [host path, container path] read-write binds. */
  readonly binds?: ReadonlyArray<readonly [string, string]>;
  /** [host path, container path] read-only binds (units, drop-ins). */
  readonly bindsRo?: ReadonlyArray<readonly [string, string]>;
  readonly timeoutMs: number;
  /** Run the container inside this network namespace (a NAT lab host) instead of the host's network. */
  readonly netns?: string;
}

export async function runInNspawn(o: NspawnOptions): Promise<NspawnRun> {
  const results = join(o.dir, 'results');
  await mkdir(results, { recursive: true });
  const script = join(o.dir, 'test-script.sh');
  await writeFile(script, `#!/bin/sh\n${o.script}\nsystemctl poweroff\n`);
  await chmod(script, 0o755);
  const unit = join(o.dir, 'peerlink-test.service');
  await writeFile(
    unit,
    '[Unit]\nDescription=peerlink unit test\n[Service]\nType=oneshot\nExecStart=/peerlink-test/test-script.sh\nStandardOutput=journal+console\n',
  );
  const args = [
    '-D',
    '/',
    '--volatile=yes',
    '--register=no',
    '--keep-unit',
    '-q',
    `--machine=peerlink-test-${process.pid}`,
    `--overlay-ro=/usr:${o.stagedUsr}:/usr`,
    `--bind-ro=${o.dir}:/peerlink-test`,
    `--bind=${results}:/results`,
    `--bind-ro=${unit}:/etc/systemd/system/peerlink-test.service`,
    ...(o.binds ?? []).map(([h, c]) => `--bind=${h}:${c}`),
    ...(o.bindsRo ?? []).map(([h, c]) => `--bind-ro=${h}:${c}`),
    ...(o.netns ? [`--network-namespace-path=/run/netns/${o.netns}`] : []),
    '-b',
    'systemd.firstboot=off',
    // The host's nftables.service would run `flush ruleset` on the shared host network: never start it.
    'systemd.mask=nftables.service',
    'systemd.unit=peerlink-test.service',
  ];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('systemd-nspawn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const timer = setTimeout(() => {
      output += `\n[test] container still running after ${o.timeoutMs} ms: killing it\n`;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
    }, o.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: performance.now() - t0 });
    });
  });
}
