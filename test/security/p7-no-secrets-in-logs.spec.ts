/**
 * P7: secrets stay out of logs and out of readable files. The real programs (built CLIs) run
 * the whole flow at debug level, including a refused connect and a forged registration; no line
 * any of them prints may hold the password (as printed or without dashes, any case), the access
 * key, the request tag key, the registration key or the master key (raw-window, base64, hex).
 * The identity file written by provisioning is 0600, and the agent refuses one that is 0644.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { createLoopbackSetup, type LoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { PROGRAMS, startProgram, type Program } from '../../scripts/lib/program.js';
import { EXIT_CODES } from '../../agent/cli/exit-codes.js';
import { ConfigError, ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { deriveAccessKey, deriveRegistrationKey, deriveRequestTagKey } from '../../agent/protocol/keys.js';
import { encodeRegister } from '../../agent/protocol/udp-packets.js';

import {
  echoService,
  findSecrets,
  LOOPBACK,
  recordingUdp,
  sleep,
  tempDir,
  type Cleanup,
  type Secrets,
  startLoopbackServer,
} from '../helpers/harness.js';
import { runProcess, type Run } from '../helpers/run-process.js';

const EQUIPMENT_ID = 'P7-DEVICE';

/** Run a program to completion under umask 000 (so only the program's own chmod protects files). */
function runUnderUmask0(script: string, args: readonly string[]): Promise<Run> {
  return runProcess('/bin/sh', ['-c', 'umask 000 && exec "$@"', 'sh', process.execPath, script, ...args]);
}

/** The exit code, or 'running' if the program is still up after `ms` (it must not hang the test). */
function exitWithin(p: Program, ms: number): Promise<number | null | 'running'> {
  let timer: NodeJS.Timeout | undefined;
  const running = new Promise<'running'>((resolve) => (timer = setTimeout(() => resolve('running'), ms)));
  return Promise.race([p.exited, running]).finally(() => clearTimeout(timer));
}

function started(t: Cleanup, p: Program): Program {
  t.teardown(() => p.stop(2000));
  return p;
}

async function setLogLevelDebug(file: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  if (!text.includes('log_level = "info"')) throw new Error(`${file}: no log_level line to rewrite`);
  await writeFile(file, text.replace('log_level = "info"', 'log_level = "debug"'));
}

/** Send `payload` through a local --listen port and resolve with what comes back (an echo). */
function roundTrip(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: LOOPBACK, port });
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      if (got.length >= payload.length) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
    s.write(payload);
  });
}

function clientArgs(setup: LoopbackSetup, passwordFile: string, listenPort: number): string[] {
  return [
    'connect',
    EQUIPMENT_ID,
    '--server',
    `${LOOPBACK}:${setup.tlsPort}`,
    '--server-name',
    'localhost',
    '--ca',
    setup.caFile,
    '--password-file',
    passwordFile,
    '--service',
    'echo',
    '--listen',
    `${LOOPBACK}:${listenPort}`,
    '--log-level',
    'debug',
  ];
}

/** Every line a program printed: its JSON log lines (re-serialised) and any other stderr text. */
function allOutput(p: Program): string {
  return [...p.lines.map((l) => JSON.stringify(l)), ...p.stderr].join('\n');
}

test('P7: the identity file written by provisioning is 0600 (even under umask 000) and works', async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t, 'peerlink-p7-');
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { echo: `${LOOPBACK}:9` } });
  const out = join(dir, 'provisioned.toml');
  const r = await runUnderUmask0(PROGRAMS.provision, [
    'device',
    '--id',
    EQUIPMENT_ID,
    '--master-key',
    join(dir, 'registration-master.key'),
    '--ca-cert',
    setup.caFile,
    '--out',
    out,
    '--password-file',
    setup.passwordFile,
  ]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '', 'with --password-file nothing is printed');
  t.is((await stat(out)).mode & 0o777, 0o600);
  const identity = await loadIdentity(out);
  t.true(identity.registrationKey.equals(deriveRegistrationKey(setup.masterKey, EQUIPMENT_ID)));
  t.true(identity.accessKey.equals(await deriveAccessKey(setup.password, EQUIPMENT_ID)));
  t.deepEqual(
    findSecrets(await readFile(out), { passwords: { password: setup.password }, keys: { masterKey: setup.masterKey } }),
    [],
    'the identity file holds neither the password nor the master key',
  );
});

test('P7: no log line of server, agent or client holds a secret (real programs, debug level, full flow)', async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t, 'peerlink-p7-');
  const echoPort = await echoService(t);
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { echo: `${LOOPBACK}:${echoPort}` } });
  // The agent runs on an identity written by the real provisioning tool.
  await rm(setup.identityFile);
  const prov = await runUnderUmask0(PROGRAMS.provision, [
    'device',
    '--id',
    EQUIPMENT_ID,
    '--master-key',
    join(dir, 'registration-master.key'),
    '--ca-cert',
    setup.caFile,
    '--out',
    setup.identityFile,
    '--password-file',
    setup.passwordFile,
  ]);
  t.is(prov.code, 0, prov.stderr);
  t.is((await stat(setup.identityFile)).mode & 0o777, 0o600);
  await setLogLevelDebug(setup.serverConfig);
  await setLogLevelDebug(setup.agentConfig);

  const accessKey = await deriveAccessKey(setup.password, EQUIPMENT_ID);
  const wrongPassword = 'WXYZ-2345-6789-ABCD-EFGH';
  const secrets: Secrets = {
    passwords: { password: setup.password, 'wrong password': wrongPassword },
    keys: {
      accessKey,
      requestTagKey: deriveRequestTagKey(accessKey),
      registrationKey: deriveRegistrationKey(setup.masterKey, EQUIPMENT_ID),
      masterKey: setup.masterKey,
    },
  };

  const server = started(t, startProgram('server', ['--config', setup.serverConfig]));
  await server.waitFor((l) => l.msg === 'rendezvous server listening');
  const agent = started(t, startProgram('agent', ['--config', setup.agentConfig]));
  await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));

  // A forged registration: exercises the server's bad-tag debug path.
  const udp = await recordingUdp(t);
  await udp.send(encodeRegister({ equipmentId: EQUIPMENT_ID, timestampMs: Date.now(), nonce: randomBytes(8) }, randomBytes(32)), {
    port: setup.udpPort,
  });
  await server.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('bad tag'));

  // The good client: two tunnels through its --listen port.
  const listenPort = await freePort();
  const client = started(t, startProgram('client', clientArgs(setup, setup.passwordFile, listenPort)));
  await client.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S208 direct channel up'), 20_000);
  // The S208 line comes just before the --listen port opens: retry the first round trip briefly.
  for (const i of [1, 2]) {
    const payload = `hello ${i} ${randomBytes(6).toString('hex')}`;
    let echoed = '';
    for (let attempt = 0; attempt < 50 && echoed !== payload; attempt++) {
      echoed = await roundTrip(listenPort, payload).catch(() => '');
      if (echoed !== payload) await sleep(100);
    }
    t.is(echoed, payload, `round trip ${i} through the tunnel`);
  }

  // A client with the wrong password: refused by the device before it connects (its wake proof, P9), AUTH_FAILED.
  const wrongFile = join(dir, 'wrong-password.txt');
  await writeFile(wrongFile, `${wrongPassword}\n`, { mode: 0o600 });
  const bad = started(t, startProgram('client', clientArgs(setup, wrongFile, await freePort())));
  t.is(await exitWithin(bad, 20_000), EXIT_CODES[ErrorCodes.AUTH_FAILED] ?? -1);
  t.true(bad.stderr.join('\n').includes(`[${ErrorCodes.AUTH_FAILED}]`));
  await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('notification refused before connecting'));

  await client.stop();
  await agent.stop();
  await server.stop();

  const programs: [string, Program][] = [
    ['server', server],
    ['agent', agent],
    ['client', client],
    ['client (wrong password)', bad],
  ];
  for (const [name, p] of programs) {
    t.true(p.lines.length > 0, `${name} logged something`);
    t.deepEqual(findSecrets(allOutput(p), secrets), [], `secrets in the ${name} output`);
  }
  // The client has no debug lines of its own; server and agent do, so debug output was covered.
  for (const [name, p] of [
    ['server', server],
    ['agent', agent],
  ] as const) {
    t.true(
      p.lines.some((l) => l.level === 20),
      `${name} logged at debug level (the check covered debug lines)`,
    );
  }
});

test('P7: the agent refuses to start with an identity file group or others can read (0644)', async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t, 'peerlink-p7-');
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { echo: `${LOOPBACK}:9` } });
  await chmod(setup.identityFile, 0o644);

  // In process: the loader's verdict carries the specific code.
  const err = await t.throwsAsync(loadIdentity(setup.identityFile));
  t.true(
    err instanceof ConfigError && isPeerlinkError(err, ErrorCodes.IDENTITY_PERMISSIONS),
    `got ${(err as { code?: string } | undefined)?.code}`,
  );

  // The real program: exits with the configuration exit code before doing anything; a real
  // server on its ports sees no registration.
  const server = await startLoopbackServer(t, setup);
  const agent = started(t, startProgram('agent', ['--config', setup.agentConfig]));
  const code = await exitWithin(agent, 10_000);
  t.not(code, 'running', 'the agent must exit, not run');
  t.not(code, 0);
  t.is(code, EXIT_CODES[ErrorCodes.IDENTITY_PERMISSIONS] ?? -1);
  t.true(agent.stderr.join('\n').includes(setup.identityFile), 'stderr names the identity file');
  t.is(agent.lines.length, 0, 'the agent never started logging');
  t.is(server.registry.size, 0);
  t.is(server.registration.counters.get('accepted') + server.registration.counters.get('badTag'), 0, 'no registration was sent');
});

// The code must be visible to an operator: the exit code (3) is shared with CONFIG_INVALID and
// IDENTITY_INVALID, so stderr carries "[PEERLINK_ERR_IDENTITY_PERMISSIONS]" (run-main.ts once
// printed configuration errors without their code).
test('P7: the agent names PEERLINK_ERR_IDENTITY_PERMISSIONS on stderr for a 0644 identity', async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t, 'peerlink-p7-');
  const setup = await createLoopbackSetup({ dir, equipmentId: EQUIPMENT_ID, services: { echo: `${LOOPBACK}:9` } });
  await chmod(setup.identityFile, 0o644);
  const agent = started(t, startProgram('agent', ['--config', setup.agentConfig]));
  const code = await exitWithin(agent, 10_000);
  t.true(code !== 'running' && code !== 0);
  t.true(agent.stderr.join('\n').includes(`[${ErrorCodes.IDENTITY_PERMISSIONS}]`), agent.stderr.join('\n'));
});
