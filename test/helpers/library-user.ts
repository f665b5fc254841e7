/**
 * A process that uses the client library as an application would (spawned by
 * test/sessions/library-reuse.spec.ts): createClient with the default options, N sequential
 * open()s each doing one round trip, then stop(). It never calls process.exit: it must end on
 * its own once stopped. It prints one JSON line: the round trips, whether each rode the live
 * session, and the handles still active after stop().
 *
 *   node dist/test/helpers/library-user.js '<json: server port, caPem, equipmentId, password, service, n[, sessionIdleMs]>'
 */
import { createClient } from '../../agent/client/client.js';
import { roundTrip } from './sessions.js';

interface Job {
  readonly tlsPort: number;
  readonly caPem: string;
  readonly equipmentId: string;
  readonly password: string;
  readonly service: string;
  readonly n: number;
  /** Passed on to createClient (0: a rendezvous per open(), over the kept server connection). */
  readonly sessionIdleMs?: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]!) as Job;
  const client = createClient({
    server: { host: '127.0.0.1', port: job.tlsPort },
    serverName: 'localhost',
    caPem: job.caPem,
    equipmentId: job.equipmentId,
    password: job.password,
    service: job.service,
    accept: { host: '127.0.0.1', port: 0 },
    ...(job.sessionIdleMs !== undefined ? { sessionIdleMs: job.sessionIdleMs } : {}),
  });
  const answers: string[] = [];
  const reused: boolean[] = [];
  for (let i = 0; i < job.n; i++) {
    const tunnel = await client.open(AbortSignal.timeout(20_000));
    reused.push(tunnel.reused === true);
    answers.push(await roundTrip(tunnel.stream, `open-${i}`));
  }
  await client.stop();
  // Handles closed by stop() leave libuv's list at its next close phase: look after that.
  await new Promise((resolve) => setTimeout(resolve, 100));
  // What would keep the process alive (stdio pipes to the parent are not ours).
  const handles = process.getActiveResourcesInfo().filter((r) => r !== 'PipeWrap' && r !== 'TTYWrap');
  process.stdout.write(`${JSON.stringify({ answers, reused, handles })}\n`);
}

main().catch((err: Error & { code?: string }) => {
  process.stdout.write(`${JSON.stringify({ error: err.code ?? err.message })}\n`);
  process.exitCode = 1;
});
