/**
 * Fault: the agent is SIGKILLed in the middle of a session and systemd restarts it
 * (Restart=on-failure): its old UPnP port mapping must be replaced, not leaked. Real programs
 * throughout: the installed unit under a real systemd (systemd-nspawn) in the NAT lab's device
 * namespace, a real UPnP gateway (miniupnpd) on the device's NAPT router, the rendezvous server
 * in the lab's server namespace, a real `peerlink connect` from the client namespace holding a
 * session open when the kill comes. The router's forwarding rules (miniupnpd's nftables chain, one
 * dnat rule per mapping) are counted before, during and after: exactly one for the agent at the end.
 */
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBundle, REPO_ROOT } from '../../scripts/bundle.js';
import { inNs } from '../../scripts/lab/exec.js';
import { ADDR, assertIsolated, createLab, type Lab } from '../../scripts/lab/topology.js';
import { startGateway, type Gateway } from '../../scripts/lab/upnp.js';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { PROGRAMS, startProgram, type Program } from '../../scripts/lib/program.js';
import { runInNspawn } from '../helpers/nspawn.js';
import { systemdTest } from '../helpers/systemd-test.js';
import { figure, sleep } from '../helpers/faults.js';

const run = promisify(execFile);
const A = 'peerlink-agent.service';
const ECHO_PORT = 7;
const CHUNK = Buffer.alloc(512, 0x62);

// The container waits for the host's go-ahead files in /results (the host runs the client).
const SCRIPT = String.raw`
R=/results
A=${A}
show() { systemctl show -p ActiveState,Result,MainPID,NRestarts,ExecMainStatus $A > $R/$1.props 2>&1; }
mapped() { journalctl --no-pager -o cat -u $A | grep -c '"msg":"port mapped"'; }
waitfor() { for i in $(seq 1 600); do [ -e $R/$1 ] && return 0; sleep 0.1; done; return 1; }
timeout 40 systemctl start $A; echo $? > $R/start.rc
for i in $(seq 1 150); do [ "$(mapped)" -ge 1 ] && break; sleep 0.1; done
show first
echo ready > $R/mapped.flag
waitfor kill.go
date +%s%3N > $R/kill.ms
systemctl kill -s SIGKILL --kill-who=main $A
for i in $(seq 1 300); do [ "$(mapped)" -ge 2 ] && break; sleep 0.1; done
date +%s%3N > $R/remapped.ms
show restarted
echo ready > $R/restarted.flag
waitfor stop.go
timeout 30 systemctl stop $A; echo $? > $R/stop.rc
show stopped
journalctl -b --no-pager -o cat -u $A > $R/journal.txt 2>&1
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

systemdTest(
  'the agent SIGKILLed mid-session and restarted by systemd replaces its UPnP port mapping: one rule on the router, not two',
  async (t) => {
    t.timeout(200_000);
    const dir = await mkdtemp(join(tmpdir(), 'peerlink-fault-mapping-'));
    const results = join(dir, 'results');
    let lab: Lab | null = null;
    let gateway: Gateway | null = null;
    let server: Program | undefined;
    const cleanups: (() => void)[] = [];
    try {
      const bundle = await buildBundle(join(dir, 'bundle'));
      const stage = join(dir, 'stage');
      await run(join(REPO_ROOT, 'scripts', 'install'), [bundle.dir], { env: { ...process.env, DESTDIR: stage } });
      lab = await createLab({ client: { nat: 'none' }, device: { nat: 'port-restricted' } });
      await assertIsolated(lab);
      const router = lab.device.router!;
      gateway = await startGateway({ router, kind: 'igd2', dir, lanCidr: ADDR.lanCidr });
      const etc = join(dir, 'etc-peerlink');
      const setup = await createLoopbackSetup({
        dir: etc,
        serverAddress: ADDR.server,
        ports: { udp: 7400, tls: 7443 },
        services: { echo: `127.0.0.1:${ECHO_PORT}` },
        portMapping: 'upnp',
      });
      // The installed unit's own state directory (StateDirectory=peerlink), where a real install keeps
      // what must outlive a crash: the setup's "state" under /etc/peerlink is not the dynamic user's.
      await writeFile(setup.agentConfig, (await readFile(setup.agentConfig, 'utf8')).replace(/^state_dir = .*$/m, ''));
      await chmod(etc, 0o755);
      server = startProgram('server', ['--config', setup.serverConfig], { netns: lab.server });
      await server.waitFor((l) => l.msg === 'rendezvous server listening', 30_000);

      // The device's echo service, in the device's namespace (the container shares it).
      const echoScript = `require('net').createServer((s)=>{s.on('error',()=>{});s.pipe(s)}).listen(${ECHO_PORT},'127.0.0.1')`;
      const echo = spawn('ip', ['netns', 'exec', lab.device.host, process.execPath, '-e', echoScript], { stdio: 'ignore' });
      cleanups.push(() => echo.kill('SIGKILL'));

      // The router's forwarding rules, counted every 100 ms while the container runs.
      const rules = (): Promise<string> => inNs(router, ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
      const ports = (text: string): string[] => [...text.matchAll(/dport (\d+)/g)].map((m) => m[1]!);
      /** "external->internal" of each dnat rule, e.g. 41565->192.168.1.2:41565. */
      const forwards = (text: string): string[] => [...text.matchAll(/dport (\d+) dnat (?:ip )?to (\S+)/g)].map((m) => `${m[1]}->${m[2]}`);
      const timeline: { at: number; ports: string[] }[] = [];
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const text = await rules().catch(() => null);
          if (text !== null) timeline.push({ at: Date.now(), ports: ports(text) });
          await sleep(100);
        }
      })();

      const container = runInNspawn({
        dir,
        stagedUsr: join(stage, 'usr'),
        script: SCRIPT,
        binds: [[etc, '/etc/peerlink']],
        netns: lab.device.host,
        timeoutMs: 170_000,
      });
      const flag = async (name: string, ms: number): Promise<boolean> => {
        const end = Date.now() + ms;
        while (Date.now() < end) {
          if (
            await readFile(join(results, name), 'utf8').then(
              () => true,
              () => false,
            )
          )
            return true;
          await sleep(100);
        }
        return false;
      };
      const get = (f: string): Promise<string> => readFile(join(results, f), 'utf8').catch(() => '');
      const clientArgs = [
        'connect',
        setup.equipmentId,
        '--server',
        `${ADDR.server}:7443`,
        '--ca',
        setup.caFile,
        '--password-file',
        setup.passwordFile,
        '--service',
        'echo',
        '--stdio',
        '--log-level',
        'info',
      ];

      t.true(await flag('mapped.flag', 60_000), 'the agent unit started and mapped its port');
      await sleep(500);
      const beforeText = await rules();
      const before = ports(beforeText);

      // A session in progress: the client streams through the tunnel when the kill comes.
      const client = spawn('ip', ['netns', 'exec', lab.client.host, process.execPath, PROGRAMS.client, ...clientArgs], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      cleanups.push(() => client.kill('SIGKILL'));
      let echoed = 0;
      let stderr = '';
      client.stdout.on('data', (d: Buffer) => (echoed += d.length));
      client.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      client.stdin.on('error', () => undefined);
      const clientExit = new Promise<number | null>((r) => client.once('exit', (code) => r(code)));
      const pump = setInterval(() => client.stdin.writable && client.stdin.write(CHUNK), 50);
      cleanups.push(() => clearInterval(pump));
      const streamEnd = Date.now() + 40_000;
      while (echoed < 16 * 1024 && Date.now() < streamEnd && client.exitCode === null) await sleep(100);
      t.true(echoed >= 16 * 1024, `the session runs (${echoed} bytes echoed): ${stderr.slice(-2000)}`);
      const path = /(connected directly[^{}\n]*?|relayed via server)(?=:| in )/.exec(stderr)?.[1] ?? '?';

      await writeFile(join(results, 'kill.go'), 'go\n');
      const restarted = await flag('restarted.flag', 60_000);
      const clientCode = await Promise.race([clientExit, sleep(20_000).then(() => 'hang' as const)]);
      clearInterval(pump);
      client.stdin.end();
      await sleep(1_500);
      const afterText = await rules();
      const after = ports(afterText);

      // The restarted agent serves again (a new session, through whatever path it takes).
      const again = spawn('ip', ['netns', 'exec', lab.client.host, process.execPath, PROGRAMS.client, ...clientArgs], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      cleanups.push(() => again.kill('SIGKILL'));
      let againOut = '';
      let againErr = '';
      again.stdout.setEncoding('utf8').on('data', (d: string) => (againOut += d));
      again.stderr.setEncoding('utf8').on('data', (d: string) => (againErr += d));
      again.stdin.end('after the restart\n');
      const againCode = await Promise.race([
        new Promise<number | null>((r) => again.once('exit', (c) => r(c))),
        sleep(40_000).then(() => 'hang' as const),
      ]);

      await writeFile(join(results, 'stop.go'), 'go\n');
      const r = await container;
      watching = false;
      await watcher;
      const final = ports(await rules());

      const journal = await get('journal.txt');
      if (!(await get('done'))) t.log(r.output.slice(-4000), journal);
      t.is((await get('done')).trim(), 'ok');
      t.is((await get('start.rc')).trim(), '0', journal);
      t.true(restarted, 'the container saw the restarted agent map its port');
      const first = props(await get('first.props'));
      const second = props(await get('restarted.props'));
      t.is(second.NRestarts, '1', 'systemd restarted the agent once (Restart=on-failure)');
      t.not(second.MainPID, first.MainPID);
      t.is(second.ActiveState, 'active');

      const killMs = Number(await get('kill.ms'));
      const remappedMs = Number(await get('remapped.ms'));
      const most = Math.max(...timeline.filter((s) => s.at >= killMs).map((s) => s.ports.length));
      figure(
        t,
        'agent SIGKILLed mid-session: the client sees',
        `exit ${String(clientCode)}: ${
          stderr
            .trim()
            .split('\n')
            .filter((l) => !l.startsWith('{'))
            .at(-1) ?? ''
        } (session ${path}, ${echoed} bytes echoed before)`,
      );
      figure(t, 'agent SIGKILLed mid-session: from the kill to the new mapping (RestartSec=2s included)', `${remappedMs - killMs} ms`);
      figure(
        t,
        'agent SIGKILLed mid-session: forwarding before / after the restart',
        `${forwards(beforeText).join(', ')} / ${forwards(afterText).join(', ')}`,
      );
      figure(
        t,
        'agent SIGKILLed mid-session: router rules (mapped ports) before / most at once after the kill / after the restart / after systemctl stop',
        `${before.length} [${before}] / ${most} / ${after.length} [${after}] / ${final.length} [${final}]`,
      );

      t.regex(journal, /removed the port mapping a previous run left/, 'the restarted agent removed the mapping the killed one left');
      t.is(before.length, 1, 'one mapping before the kill');
      t.not(clientCode, 'hang', 'the client in session noticed the kill');
      t.is(after.length, 1, `exactly one mapping for the agent after its restart (the old one replaced, not leaked): ${after.join(', ')}`);
      t.is(againCode, 0, againErr.slice(-2000));
      t.is(againOut, 'after the restart\n');
      t.is((await get('stop.rc')).trim(), '0');
      t.is(final.length, 0, 'systemctl stop removes the mapping');
    } finally {
      for (const c of cleanups) c();
      await server?.stop();
      await gateway?.stop().catch(() => undefined);
      await lab?.destroy();
      if (process.env.PEERLINK_KEEP_TEST_DIR) t.log(`kept ${dir}`);
      else await rm(dir, { recursive: true, force: true });
    }
  },
);
