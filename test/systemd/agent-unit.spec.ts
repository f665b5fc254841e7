/**
 * The shipped agent unit under a real systemd (252, in systemd-nspawn), installed from the
 * firmware bundle by scripts/install, talking to a real rendezvous server on the host:
 * - systemd-analyze verify is clean; the security exposure score is recorded;
 * - start: active, with a StatusText that says registered and where;
 * - systemctl reload applies a new service without a restart or a new registration;
 *   a broken settings file on reload is refused and the old settings keep running;
 * - SIGSTOP: the watchdog kills the hung agent and systemd restarts it (NRestarts grows);
 * - systemctl stop: clean exit (Result=success, status 0), not a timeout kill;
 * - the server's unit starts (its secrets as credentials), says where it listens, stops cleanly;
 * - with no server answering, the agent still becomes active (after its grace period) and its
 *   StatusText says why it is not registered.
 * The unit's WatchdogSec is shortened to 4 s by a drop-in so the run stays short.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, copyFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBundle, REPO_ROOT } from '../../scripts/bundle.js';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { startProgram, type Program } from '../../scripts/lib/program.js';
import { runInNspawn } from '../helpers/nspawn.js';
import { systemdTest } from '../helpers/systemd-test.js';

const run = promisify(execFile);
const A = 'peerlink-agent.service';

const SCRIPT = String.raw`
R=/results
A=${A}
now() { date +%s%3N; }
show() { systemctl show -p ActiveState,SubState,Result,StatusText,MainPID,NRestarts,ExecMainStatus,ExecMainCode $A > $R/$1.props 2>&1; }
st() { node /usr/lib/peerlink/peerlink-agent.cjs status --json > $R/$1.status.json 2>&1; echo $? > $R/$1.status.rc; }
waitreload() { for i in $(seq 1 50); do st $1; grep -q "\"reloads\": $2" $R/$1.status.json && return; sleep 0.2; done; }
systemd-analyze verify $A peerlink-server.service > $R/verify.txt 2>&1; echo $? > $R/verify.rc
systemd-analyze security --no-pager $A > $R/security-agent.txt 2>&1
systemd-analyze security --no-pager peerlink-server.service > $R/security-server.txt 2>&1
t=$(now); timeout 40 systemctl start $A; echo $? > $R/start.rc; echo $(( $(now) - t )) > $R/start.ms
show 1-started; st 1-started
node /usr/lib/peerlink/peerlink-agent.cjs status > $R/1-started.status.txt 2>&1
cp /etc/peerlink/agent.reload.toml /etc/peerlink/agent.toml
systemctl reload $A; echo $? > $R/reload.rc
waitreload 2-reloaded 1; show 2-reloaded
cp /etc/peerlink/agent.broken.toml /etc/peerlink/agent.toml
systemctl reload $A; echo $? > $R/reload-broken.rc
waitreload 2b-refused 2; show 2b-refused
# a technician fixes the file again (a restart would otherwise refuse to start, exit 3)
cp /etc/peerlink/agent.reload.toml /etc/peerlink/agent.toml
pid=$(systemctl show -p MainPID --value $A)
t=$(now); kill -STOP $pid
for i in $(seq 1 200); do
  n=$(systemctl show -p NRestarts --value $A); s=$(systemctl show -p ActiveState --value $A); p=$(systemctl show -p MainPID --value $A)
  [ "$n" -ge 1 ] && [ "$s" = active ] && [ "$p" != "$pid" ] && break; sleep 0.2
done
echo $(( $(now) - t )) > $R/3-restart.ms
show 3-restarted; st 3-restarted
t=$(now); timeout 30 systemctl stop $A; echo $? > $R/stop.rc; echo $(( $(now) - t )) > $R/stop.ms
show 4-stopped
journalctl -b --no-pager -o short-monotonic -u $A > $R/journal.txt 2>&1
S=peerlink-server.service
timeout 40 systemctl start $S; echo $? > $R/server-start.rc
systemctl show -p ActiveState,StatusText,NRestarts $S > $R/server-started.props 2>&1
timeout 30 systemctl stop $S; echo $? > $R/server-stop.rc
systemctl show -p ActiveState,Result,ExecMainStatus $S > $R/server-stopped.props 2>&1
journalctl -b --no-pager -o short-monotonic -u $S > $R/server-journal.txt 2>&1
# no server answers: the unit still comes up (READY=1 after the grace period) and says why it is not registered
cp /etc/peerlink/agent.unreachable.toml /etc/peerlink/agent.toml
timeout 40 systemctl start $A; echo $? > $R/unreachable-start.rc
show 5-unreachable
timeout 30 systemctl stop $A
echo ok > $R/done
`;

function props(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

systemdTest('the agent and server units under systemd 252: ready, reload, watchdog restart, clean stop, unreachable server', async (t) => {
  t.timeout(150_000);
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-systemd-'));
  let server: Program | undefined;
  try {
    // The firmware way: bundle, then install into a staged root laid over the container's /usr.
    const bundle = await buildBundle(join(dir, 'bundle'));
    const stage = join(dir, 'stage');
    await run(join(REPO_ROOT, 'scripts', 'install'), [bundle.dir], { env: { ...process.env, DESTDIR: stage } });
    // Settings and identity; /etc/peerlink is a writable bind so the script can edit the settings.
    const etc = join(dir, 'etc-peerlink');
    const setup = await createLoopbackSetup({ dir: etc, services: { echo: '127.0.0.1:7' } });
    const base = await readFile(setup.agentConfig, 'utf8');
    await writeFile(join(etc, 'agent.reload.toml'), `${base}\nadded-by-reload = "127.0.0.1:9"\n`);
    const broken = `bogus_key = 1\n${base.replace(/^interval_ms = \d+$/m, 'interval_ms = "often"')}`;
    t.not(broken, `bogus_key = 1\n${base}`);
    await writeFile(join(etc, 'agent.broken.toml'), broken);
    await writeFile(join(etc, 'agent.unreachable.toml'), base.replace(/^udp_port = \d+$/m, `udp_port = ${await freePort()}`));
    await chmod(etc, 0o755);
    // The host's server keeps its own copy; /etc/peerlink/server.toml becomes the unit's.
    const hostServerConfig = join(etc, 'host-server.toml');
    await copyFile(setup.serverConfig, hostServerConfig);
    // The server unit's own settings: its secrets arrive as credentials (root-only files on the host).
    const [sUdp, sTls] = [await freePort(), await freePort()];
    const cred = '/run/credentials/peerlink-server.service';
    await writeFile(
      join(etc, 'server.toml'),
      `registration_master_key_file = "${cred}/registration-master.key"\n[udp]\nhost = "127.0.0.1"\nport = ${sUdp}\n` +
        `[tls]\nhost = "127.0.0.1"\nport = ${sTls}\ncert_file = "/etc/peerlink/server.pem"\nkey_file = "${cred}/tls.key"\n`,
    );
    const dropIn = join(dir, 'watchdog.conf');
    await writeFile(dropIn, '[Service]\n# test only: a short watchdog so the SIGSTOP case finishes quickly\nWatchdogSec=4s\n');

    server = startProgram('server', ['--config', hostServerConfig]);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');

    const r = await runInNspawn({
      dir,
      stagedUsr: join(stage, 'usr'),
      script: SCRIPT,
      binds: [[etc, '/etc/peerlink']],
      bindsRo: [[dropIn, `/etc/systemd/system/${A}.d/watchdog.conf`]],
      timeoutMs: 120_000,
    });
    const res = join(dir, 'results');
    const get = (f: string): Promise<string> => readFile(join(res, f), 'utf8').catch(() => '');
    const done = await get('done');
    const journal = await get('journal.txt');
    t.log(`container ran ${Math.round(r.ms)} ms, exit ${r.code}`);
    if (!done) t.log(r.output.slice(-4000), journal);
    t.is(done.trim(), 'ok', 'the in-container script finished');

    // systemd-analyze
    const verify = await get('verify.txt');
    t.is((await get('verify.rc')).trim(), '0', verify);
    t.is(verify.trim(), '', `systemd-analyze verify complains:\n${verify}`);
    const security = (await get('security-agent.txt')).match(/Overall exposure level for \S+: ([\d.]+) (\S+)/);
    t.truthy(security, 'systemd-analyze security printed a score');
    t.log(
      `exposure: agent ${security?.[1]} ${security?.[2]}; server ${(await get('security-server.txt')).match(/Overall exposure level for \S+: ([\d.]+ \S+)/)?.[1]}`,
    );

    // start
    t.is((await get('start.rc')).trim(), '0');
    const started = props(await get('1-started.props'));
    t.is(started.ActiveState, 'active');
    t.regex(started.StatusText ?? '', /^registered with 127\.0\.0\.1:\d+ as 127\.0\.0\.1:\d+/);
    const s1 = JSON.parse(await get('1-started.status.json')) as Record<string, any>;
    t.true(s1.running);
    t.is(s1.registration, 'registered');
    t.is(s1.equipmentId, setup.equipmentId);
    t.regex(await get('1-started.status.txt'), /registered\s+yes/);
    t.log(`start -> active (READY=1): ${(await get('start.ms')).trim()} ms; StatusText: ${started.StatusText}`);

    // reload: applied, same process, same registration (same public endpoint, no new registration needed)
    t.is((await get('reload.rc')).trim(), '0');
    const s2 = JSON.parse(await get('2-reloaded.status.json')) as Record<string, any>;
    const p2 = props(await get('2-reloaded.props'));
    t.deepEqual(s2.services, ['echo', 'added-by-reload']);
    t.is(s2.registration, 'registered');
    t.deepEqual(s2.publicEndpoint, s1.publicEndpoint);
    t.is(s2.pid, s1.pid);
    t.is(p2.MainPID, started.MainPID);
    t.is(p2.ActiveState, 'active');
    t.is(p2.NRestarts, '0');
    // a broken file: refused, old settings kept, still registered
    const s2b = JSON.parse(await get('2b-refused.status.json')) as Record<string, any>;
    t.false(s2b.lastReload.ok);
    t.true(
      s2b.lastReload.problems.some((p: string) => p.includes('bogus_key')) &&
        s2b.lastReload.problems.some((p: string) => p.includes('registration.interval_ms')),
    );
    t.deepEqual(s2b.services, ['echo', 'added-by-reload']);
    t.is(s2b.registration, 'registered');
    t.regex(props(await get('2b-refused.props')).StatusText ?? '', /last reload refused/);

    // watchdog: the stopped agent was killed and restarted
    const p3 = props(await get('3-restarted.props'));
    t.is(p3.ActiveState, 'active');
    t.true(Number(p3.NRestarts) >= 1, `NRestarts ${p3.NRestarts}`);
    t.not(p3.MainPID, started.MainPID);
    t.regex(journal, /[Ww]atchdog timeout/);
    const s3 = JSON.parse(await get('3-restarted.status.json')) as Record<string, any>;
    t.is(s3.registration, 'registered');
    t.log(`SIGSTOP -> watchdog kill -> restarted and registered: ${(await get('3-restart.ms')).trim()} ms (WatchdogSec=4s)`);

    // stop: clean and fast (exit 0, not killed at TimeoutStopSec)
    t.is((await get('stop.rc')).trim(), '0');
    const p4 = props(await get('4-stopped.props'));
    t.is(p4.ActiveState, 'inactive');
    t.is(p4.Result, 'success');
    t.is(p4.ExecMainStatus, '0');
    t.regex(journal, /"msg":"stopped"/);
    t.notRegex(journal, /systemd notification failed/, 'every notification reached systemd');
    t.log(`systemctl stop: ${(await get('stop.ms')).trim()} ms`);

    // the server's unit
    const serverJournal = await get('server-journal.txt');
    t.is((await get('server-start.rc')).trim(), '0', serverJournal);
    const sp = props(await get('server-started.props'));
    t.is(sp.ActiveState, 'active');
    t.is(sp.StatusText, `listening on udp 127.0.0.1:${sUdp}, tls 127.0.0.1:${sTls}`);
    t.is((await get('server-stop.rc')).trim(), '0');
    const ss = props(await get('server-stopped.props'));
    t.is(ss.Result, 'success');
    t.is(ss.ExecMainStatus, '0');
    t.notRegex(serverJournal, /systemd notification failed/);

    // no answer from the server: active anyway, with a STATUS that says why
    t.is((await get('unreachable-start.rc')).trim(), '0');
    const p5 = props(await get('5-unreachable.props'));
    t.is(p5.ActiveState, 'active');
    t.regex(p5.StatusText ?? '', /^not registered: server 127\.0\.0\.1:\d+ unreachable \(no acknowledgement\), retrying$/);
    t.log(`unreachable server: StatusText: ${p5.StatusText}`);
  } finally {
    await server?.stop();
    if (process.env.PEERLINK_KEEP_TEST_DIR) t.log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
});
