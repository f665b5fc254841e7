/**
 * Test fixture: a throwaway setup with the real server and agent programs running and the
 * device registered. Everything is torn down by ava's teardown, also when the test fails.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:net';
import { createLoopbackSetup, type LoopbackSetup, type LoopbackSetupOptions, connectArgs } from '../../scripts/lib/loopback-setup.js';
import { startProgram, type Program } from '../../scripts/lib/program.js';

/** Something that runs clean-ups later: an ava test context, or a shared scope (see sharedScope). */
export interface Scope {
  teardown(fn: () => unknown): void;
}

/** A scope for hooks (ava forbids t.teardown there): call close() in test.after.always. */
export function sharedScope(): Scope & { close(): Promise<void> } {
  const fns: (() => unknown)[] = [];
  return {
    teardown: (fn) => void fns.push(fn),
    async close() {
      for (const fn of fns.reverse()) await fn();
    },
  };
}

export interface Flow {
  readonly setup: LoopbackSetup;
  readonly server: Program;
  readonly agent: Program;
  /** Arguments for `peerlink connect` against this setup (add --listen or --stdio). */
  clientArgs(service: string, extra?: readonly string[]): string[];
}

export async function tempDir(t: Scope, prefix = 'peerlink-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function startFlow(
  t: Scope,
  opts: Omit<LoopbackSetupOptions, 'dir'> & { startAgent?: boolean; agentArgs?: (setup: LoopbackSetup) => readonly string[] },
): Promise<Flow> {
  const dir = await tempDir(t);
  const setup = await createLoopbackSetup({ dir, ...opts });
  const server = startProgram('server', ['--config', setup.serverConfig]);
  t.teardown(() => server.stop().then(() => undefined));
  await server.waitFor((l) => l.msg === 'rendezvous server listening');
  const agent = startProgram('agent', ['--config', setup.agentConfig, ...(opts.agentArgs?.(setup) ?? [])]);
  t.teardown(() => agent.stop().then(() => undefined));
  if (opts.startAgent !== false) await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
  return {
    setup,
    server,
    agent,
    clientArgs: (service, extra = []) => [...connectArgs(setup, service), ...extra],
  };
}

/** A TCP echo service on loopback (the appliance's "service"), closed at teardown. */
export async function echoService(t: Scope): Promise<{ port: number; server: Server }> {
  const server = createServer((s) => {
    s.on('error', () => undefined); // a peer reset is not the service's failure
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const a = server.address();
  return { port: typeof a === 'object' && a ? a.port : 0, server };
}

/** Wait for a plain-text stderr line (e.g. "peerlink: serving ..."). */
export async function waitForStderr(p: Program, re: RegExp, timeoutMs = 15_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const hit = p.stderr.find((l) => re.test(l));
    if (hit) return hit;
    if (p.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no stderr line matching ${re} (stderr: ${p.stderr.join(' | ')})`);
}
