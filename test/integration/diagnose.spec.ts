/** `peerlink-agent diagnose` against the real server on loopback: every check and its verdict, good and broken set-ups. */
import test from 'ava';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDiagnose } from '../../agent/diagnose/diagnose.js';
import { formatReport, type DiagnoseReport } from '../../agent/diagnose/report.js';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { createLoopbackSetup, type LoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { startProgram, type Program } from '../../scripts/lib/program.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { runNode } from '../helpers/run-process.js';

async function withServer(
  fn: (s: LoopbackSetup, server: Program | null) => Promise<void>,
  o: { startServer?: boolean } = {},
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-diagnose-'));
  const probePort = await freePort();
  const setup = await createLoopbackSetup({ dir, services: { http: '127.0.0.1:9' }, serverExtra: `[probe]\nport = ${probePort}` });
  const text = await readFile(setup.agentConfig, 'utf8');
  await writeFile(setup.agentConfig, text.replace('server_name = "localhost"', `server_name = "localhost"\nprobe_port = ${probePort}`));
  let server: Program | null = null;
  try {
    if (o.startServer !== false) {
      server = startProgram('server', ['--config', setup.serverConfig]);
      await server.waitFor((l) => l.msg === 'rendezvous server listening');
    }
    await fn(setup, server);
  } finally {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const verdicts = (r: DiagnoseReport): Record<string, string> => Object.fromEntries(r.checks.map((c) => [c.id, c.verdict]));

test('a healthy device: every check passes; public address, endpoint-independent mapping, clock offset, certificate days', async (t) => {
  await withServer(async (s, server) => {
    const r = await runDiagnose({ configFile: s.agentConfig, skipPortMapping: true });
    t.log(formatReport(r));
    t.like(verdicts(r), {
      settings: 'ok',
      identity: 'ok',
      'server-udp': 'ok',
      'server-tls': 'ok',
      'public-address': 'ok',
      'nat-mapping': 'ok',
      'port-mapping': 'skip',
      clock: 'ok',
    });
    t.true(r.ok);
    t.is(r.equipmentId, s.equipmentId);
    t.like(r.checks.find((c) => c.id === 'nat-mapping')?.data, { behaviour: 'endpoint-independent' });
    t.true(((r.checks.find((c) => c.id === 'server-tls')?.data?.daysToExpiry as number) ?? 0) > 300);
    // Probes change nothing at the server: no device was registered by diagnose.
    server!.child.kill('SIGUSR2');
    const list = await server!.waitFor((l) => l.msg === 'equipment list');
    t.deepEqual(list.equipmentList, []);
    t.like(list.counters, { accepted: 0, probes: 1 });
  });
});

test('broken set-ups are named with a fix: server down, identity readable by others, certificate from another CA', async (t) => {
  await withServer(
    async (s) => {
      const down = await runDiagnose({ configFile: s.agentConfig, skipPortMapping: true });
      t.like(verdicts(down), {
        settings: 'ok',
        identity: 'ok',
        'server-udp': 'fail',
        'server-tls': 'fail',
        'public-address': 'skip',
        clock: 'skip',
      });
      t.false(down.ok);
      t.regex(down.checks.find((c) => c.id === 'server-udp')!.fix!, /outgoing UDP/);

      await chmod(s.identityFile, 0o644);
      const perms = await runDiagnose({ configFile: s.agentConfig, skipPortMapping: true });
      t.is(perms.checks.find((c) => c.id === 'identity')!.verdict, 'fail');
      t.is(perms.checks.find((c) => c.id === 'identity')!.fix, `chmod 600 ${s.identityFile}`);
    },
    { startServer: false },
  );

  await withServer(
    async (s) => {
      const other = createCa({ commonName: 'some other CA' });
      const cert = issueServerCert({ caCertPem: other.certPem, caKeyPem: other.keyPem, hosts: ['localhost', '127.0.0.1'] });
      await writeFile(join(s.dir, 'server.pem'), cert.certPem);
      await writeFile(join(s.dir, 'server.key'), cert.keyPem, { mode: 0o600 });
      const server = startProgram('server', ['--config', s.serverConfig]);
      try {
        await server.waitFor((l) => l.msg === 'rendezvous server listening');
        const r = await runDiagnose({ configFile: s.agentConfig, skipPortMapping: true });
        t.like(verdicts(r), { 'server-udp': 'ok', 'server-tls': 'fail' });
        t.regex(r.checks.find((c) => c.id === 'server-tls')!.fix!, /not from the CA/);
      } finally {
        await server.stop();
      }
    },
    { startServer: false },
  );
});

test('bad settings: diagnose says which key, skips what depends on it, and the CLI exits 1 (--json is machine-readable)', async (t) => {
  await withServer(
    async (s) => {
      await writeFile(s.agentConfig, `${await readFile(s.agentConfig, 'utf8')}\n[registration2]\nx = 1\n`);
      const r = await runNode(PROGRAMS.agent, ['diagnose', '--json', '--config', s.agentConfig]);
      t.is(r.code, 1, r.stderr);
      const report = JSON.parse(r.stdout) as DiagnoseReport;
      t.is(report.checks[0]!.verdict, 'fail');
      t.regex(report.checks[0]!.summary, /registration2: unknown key/);
      t.true(report.checks.slice(1).every((c) => c.verdict === 'skip'));
    },
    { startServer: false },
  );
});
