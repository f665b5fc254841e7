/**
 * Fault: `server.host` stops resolving (the name is gone from DNS), then resolves to a new address
 * where the server now runs. The agent resolves the name on every round (agent/device/registrar.ts),
 * so it says what is wrong while the name is gone and follows the move without a restart. The
 * agent runs in its own mount namespace with a private /etc/hosts (root), so nothing outside the
 * test changes; the server moves from 127.0.0.1 to 127.0.0.2 (same settings, same keys).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { PROGRAMS, startProgram, type LogLine } from '../../scripts/lib/program.js';
import { echoService, tempDir } from '../helpers/flow.js';
import { figure, runClient } from '../helpers/faults.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) process.stderr.write('server-dns.spec: SKIPPED: needs root for a private /etc/hosts (unshare -m)\n');
const rootTest = isRoot ? test : test.skip;
const NAME = 'rendezvous.peerlink.test';
const INTERVAL_MS = 15_000;

rootTest(
  "server.host stops resolving, then resolves to the server's new address: the agent says so, then follows without a restart",
  async (t) => {
    t.timeout(120_000);
    const echo = await echoService(t);
    const dir = await tempDir(t, 'peerlink-dns-');
    const setup = await createLoopbackSetup({ dir, services: { echo: `127.0.0.1:${echo.port}` }, registerIntervalMs: INTERVAL_MS });
    await writeFile(setup.agentConfig, (await readFile(setup.agentConfig, 'utf8')).replace('host = "127.0.0.1"', `host = "${NAME}"`));
    const hosts = join(dir, 'hosts');
    await writeFile(hosts, `127.0.0.1 localhost\n127.0.0.1 ${NAME}\n`);
    const server1 = startProgram('server', ['--config', setup.serverConfig]);
    t.teardown(() => server1.stop().then(() => undefined));
    await server1.waitFor((l) => l.msg === 'rendezvous server listening');

    // The agent, with /etc/hosts bound to the test's file in a mount namespace of its own.
    const agent = spawn(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount --bind "$0" /etc/hosts && exec "$@"',
        hosts,
        process.execPath,
        PROGRAMS.agent,
        '--config',
        setup.agentConfig,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    t.teardown(() => agent.kill('SIGTERM'));
    const lines: (LogLine & { atMs: number })[] = [];
    createInterface({ input: agent.stdout }).on('line', (l) => {
      try {
        lines.push({ ...(JSON.parse(l) as LogLine), atMs: performance.now() });
      } catch {
        /* not a log line */
      }
    });
    const waitLine = async (pred: (l: LogLine) => boolean, after: number, ms: number): Promise<LogLine & { atMs: number }> => {
      const end = performance.now() + ms;
      for (;;) {
        const hit = lines.find((l) => l.atMs >= after && pred(l));
        if (hit) return hit;
        if (performance.now() > end) throw new Error(`no agent line within ${ms} ms; last: ${JSON.stringify(lines.slice(-3))}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await waitLine((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'), 0, 20_000);

    // The name is gone.
    const goneAt = performance.now();
    await writeFile(hosts, '127.0.0.1 localhost\n');
    const said = await waitLine((l) => l.msg === 'cannot resolve the rendezvous server', goneAt, INTERVAL_MS + 5_000);
    figure(
      t,
      'server.host stops resolving: the agent says, after',
      `${Math.round(said.atMs - goneAt)} ms: ${said.msg} (${String(said.err)})`,
    );

    // The server moves to 127.0.0.2, and the name follows it.
    await server1.stop();
    const cfg2 = join(dir, 'server-2.toml');
    await writeFile(cfg2, (await readFile(setup.serverConfig, 'utf8')).replaceAll('host = "127.0.0.1"', 'host = "127.0.0.2"'));
    const server2 = startProgram('server', ['--config', cfg2]);
    t.teardown(() => server2.stop().then(() => undefined));
    await server2.waitFor((l) => l.msg === 'rendezvous server listening');
    const movedAt = performance.now();
    await writeFile(hosts, `127.0.0.1 localhost\n127.0.0.2 ${NAME}\n`);
    await server2.waitFor((l) => l.msg === 'S202 device registered', INTERVAL_MS + 5_000);
    const backMs = Math.round(performance.now() - movedAt);
    figure(t, 'server.host resolves to the new address: registered there after', `${backMs} ms (interval ${INTERVAL_MS} ms)`);
    t.true(backMs <= INTERVAL_MS, `${backMs} ms`);

    const run = await runClient(
      [
        'connect',
        setup.equipmentId,
        '--server',
        `127.0.0.2:${setup.tlsPort}`,
        '--server-name',
        'localhost',
        '--ca',
        setup.caFile,
        '--password-file',
        setup.passwordFile,
        '--service',
        'echo',
        '--stdio',
      ],
      'moved\n',
    ).done;
    t.is(run.code, 0, run.said);
    t.is(run.stdout, 'moved\n');
    t.is(agent.exitCode, null, 'the agent was not restarted');
  },
);
