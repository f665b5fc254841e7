/**
 * The agent's unit behind a real NAPT router with a real UPnP gateway (miniupnpd): systemd-nspawn
 * runs inside the NAT lab's device namespace, the rendezvous server in the lab's server namespace.
 * Under the unit's hardening (RestrictAddressFamilies, ProcSubset=pid, DynamicUser ...) the agent
 * registers through the NAT, maps its reverse port on the router (the forwarding rule appears in
 * the router's nftables), shows it in STATUS= and `status`, and `systemctl stop` removes it.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBundle, REPO_ROOT } from '../../scripts/bundle.js';
import { inNs } from '../../scripts/lab/exec.js';
import { ADDR, assertIsolated, createLab, type Lab } from '../../scripts/lab/topology.js';
import { startGateway, type Gateway } from '../../scripts/lab/upnp.js';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { startProgram, type Program } from '../../scripts/lib/program.js';
import { runInNspawn } from '../helpers/nspawn.js';
import { systemdTest } from '../helpers/systemd-test.js';

const run = promisify(execFile);
const A = 'peerlink-agent.service';

const SCRIPT = String.raw`
R=/results
A=${A}
show() { systemctl show -p ActiveState,Result,StatusText,ExecMainStatus $A > $R/$1.props 2>&1; }
timeout 40 systemctl start $A; echo $? > $R/start.rc
for i in $(seq 1 100); do
  node /usr/lib/peerlink/peerlink-agent.cjs status --json > $R/mapped.status.json 2>&1
  grep -q '"state": "mapped"' $R/mapped.status.json && break; sleep 0.2
done
show mapped
echo ready > $R/mapped.flag
sleep 1
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

systemdTest('behind a NAT with a UPnP gateway, the agent unit maps its reverse port and systemctl stop removes the mapping', async (t) => {
  t.timeout(150_000);
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-systemd-nat-'));
  let lab: Lab | null = null;
  let gateway: Gateway | null = null;
  let server: Program | undefined;
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
      services: { echo: '127.0.0.1:7' },
      portMapping: 'auto',
    });
    await chmod(etc, 0o755);
    server = startProgram('server', ['--config', setup.serverConfig], { netns: lab.server });
    await server.waitFor((l) => l.msg === 'rendezvous server listening', 30_000);

    // Watch the router's forwarding rules while the container runs.
    const rules = (): Promise<string> => inNs(router, ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const m of (await rules().catch(() => '')).matchAll(/dport (\d+)/g)) seen.add(m[1]!);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const r = await runInNspawn({
      dir,
      stagedUsr: join(stage, 'usr'),
      script: SCRIPT,
      binds: [[etc, '/etc/peerlink']],
      netns: lab.device.host,
      timeoutMs: 120_000,
    });
    watching = false;
    await watcher;
    const after = await rules();

    const get = (f: string): Promise<string> => readFile(join(dir, 'results', f), 'utf8').catch(() => '');
    const journal = await get('journal.txt');
    if (!(await get('done'))) t.log(r.output.slice(-4000), journal);
    t.is((await get('done')).trim(), 'ok');
    t.is((await get('start.rc')).trim(), '0', journal);
    const status = JSON.parse(await get('mapped.status.json')) as Record<string, any>;
    t.is(status.registration, 'registered');
    t.is(status.publicEndpoint?.address, lab.device.publicAddress, 'registered through the NAT: the server sees the router');
    t.is(status.portMapping?.state, 'mapped', `${JSON.stringify(status.portMapping)}\n${journal}`);
    const external = String(status.portMapping?.external);
    const port = external.split(':')[1]!;
    t.is(external, `${lab.device.publicAddress}:${port}`);
    const mapped = props(await get('mapped.props'));
    t.is(mapped.ActiveState, 'active');
    t.regex(
      mapped.StatusText ?? '',
      new RegExp(
        `^registered with ${ADDR.server.replace(/\./g, '\\.')}:7400 as ${lab.device.publicAddress.replace(/\./g, '\\.')}:\\d+; port mapping ${external} via (upnp|natpmp)$`,
      ),
    );
    t.true(seen.has(port), `the router forwarded port ${port} while the agent ran (seen: ${[...seen].join(', ')})`);
    t.log(`StatusText: ${mapped.StatusText}`);

    t.is((await get('stop.rc')).trim(), '0');
    const stopped = props(await get('stopped.props'));
    t.is(stopped.Result, 'success');
    t.is(stopped.ExecMainStatus, '0');
    t.regex(journal, /port mapping removed/);
    t.notRegex(after, new RegExp(`dport ${port}\\b`), 'the forwarding rule is gone from the router after systemctl stop');
  } finally {
    await server?.stop();
    await gateway?.stop().catch(() => undefined);
    await lab?.destroy();
    if (process.env.PEERLINK_KEEP_TEST_DIR) t.log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
});
