/**
 * Spec helpers for pairing and the owner's controls (issue 19): run the real `peerlink` and
 * `peerlink-agent` programs against a flow (test/helpers/flow.ts), hold a session open through
 * `peerlink connect --listen`, and tell when it is cut.
 */
import { connect, type Socket } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROGRAMS, startProgram, type Program } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { runNode, type Run } from './run-process.js';
import { waitForStderr, type Flow, type Scope } from './flow.js';

/** --server, --ca, --server-name of the flow, for `peerlink pair|device|connect`. */
export function serverArgs(flow: Flow): string[] {
  return ['--server', `127.0.0.1:${flow.setup.tlsPort}`, '--server-name', 'localhost', '--ca', flow.setup.caFile];
}

export function peerlink(args: readonly string[]): Promise<Run> {
  return runNode(PROGRAMS.client, args);
}

export function agentCommand(flow: Flow, args: readonly string[]): Promise<Run> {
  return runNode(PROGRAMS.agent, [...args, '--config', flow.setup.agentConfig]);
}

export async function pairAs(flow: Flow, dir: string, name: string, passwordFile = flow.setup.passwordFile): Promise<Run> {
  return peerlink([
    'pair',
    flow.setup.equipmentId,
    '--name',
    name,
    '--pairing-dir',
    dir,
    '--password-file',
    passwordFile,
    ...serverArgs(flow),
  ]);
}

/** A file holding a password, mode 0600. */
export async function passwordFile(dir: string, name: string, password: string): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, `${password}\n`, { mode: 0o600 });
  return f;
}

/** `peerlink connect --stdio` one echo round trip; how: pairing dir, or password file. */
export async function echoOnce(flow: Flow, how: { pairingDir: string } | { passwordFile: string }, payload = 'ping'): Promise<Run> {
  const cred =
    'pairingDir' in how
      ? ['--pairing-dir', how.pairingDir]
      : ['--password-file', how.passwordFile, '--pairing-dir', '/nonexistent-peerlink-pairings'];
  const { runNodeStdio } = await import('./run-process.js');
  const r = await runNodeStdio(
    PROGRAMS.client,
    ['connect', flow.setup.equipmentId, ...cred, ...serverArgs(flow), '--service', 'echo', '--stdio'],
    Buffer.from(payload),
  );
  return { code: r.code, stdout: String(r.bytes), stderr: r.stderr };
}

export interface LiveSession {
  readonly client: Program;
  readonly socket: Socket;
  /** Resolves when the session's local connection closed. */
  readonly closed: Promise<void>;
  isClosed(): boolean;
  /** One echo round trip on the open session. */
  echo(payload: string): Promise<string>;
}

/** `peerlink connect --listen`, then one local connection through it: a session in progress. */
export async function liveSession(
  t: Scope,
  flow: Flow,
  how: { pairingDir: string } | { passwordFile: string },
  extra: readonly string[] = [],
): Promise<LiveSession> {
  const port = await freePort();
  const cred =
    'pairingDir' in how
      ? ['--pairing-dir', how.pairingDir]
      : ['--password-file', how.passwordFile, '--pairing-dir', '/nonexistent-peerlink-pairings'];
  const client = startProgram('client', [
    'connect',
    flow.setup.equipmentId,
    ...cred,
    ...serverArgs(flow),
    '--service',
    'echo',
    '--listen',
    `127.0.0.1:${port}`,
    '--log-level',
    'info',
    ...extra,
  ]);
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/);
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let closed = false;
  const closedP = new Promise<void>((r) => socket.once('close', () => ((closed = true), r())));
  t.teardown(() => void socket.destroy());
  await new Promise<void>((r, j) => {
    socket.once('connect', () => r());
    socket.once('error', j);
  });
  let buf = '';
  socket.setEncoding('utf8').on('data', (d: string) => (buf += d));
  return {
    client,
    socket,
    closed: closedP,
    isClosed: () => closed,
    async echo(payload) {
      buf = '';
      socket.write(payload);
      const end = Date.now() + 10_000;
      while (buf.length < payload.length && Date.now() < end && !closed) await new Promise((r) => setTimeout(r, 10));
      return buf;
    },
  };
}
