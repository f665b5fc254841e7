#!/usr/bin/env node
/**
 * Connection-request load generator (its own process), against a running server and agent:
 *   1. the floor: ROUNDS direct TLS connects to the server (full handshake, CA-verified);
 *   2. ROUNDS connection requests one after another from one client: time to connect, from the
 *      request until the end-to-end channel is up (S203 ... S208); its connection to the server is
 *      kept between requests (server-link.ts);
 *   2b. the first request of a fresh client, as a new process makes it: no TLS context, no ticket,
 *      no kept connection (a new client each round, the process's TLS caches emptied);
 *   3. CONCURRENCY requests kept in flight for SECONDS: requests per second, and their latencies.
 * argv: JSON file {tlsPort, caPem, equipmentId, password, service, rounds, concurrency, seconds}
 */
import { readFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { createClient, type ClientOptions } from '../../agent/client/client.js';
import { deriveAccessKey } from '../../agent/protocol/keys.js';
import { forgetServerSessions } from '../../agent/rendezvous/server-tls.js';
import { cpuSeconds } from './cpu-time.js';

interface Job {
  readonly tlsPort: number;
  readonly caPem: string;
  readonly equipmentId: string;
  readonly password: string;
  readonly service: string;
  readonly rounds: number;
  readonly concurrency: number;
  readonly seconds: number;
  readonly serverPid: number;
  readonly agentPid: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const summary = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50Ms: percentile(s, 50), p99Ms: percentile(s, 99) };
};

function tlsOnce(job: Job): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = tlsConnect({ host: '127.0.0.1', port: job.tlsPort, servername: 'localhost', ca: job.caPem }, () => {
      const ms = performance.now() - t0;
      s.destroy();
      resolve(ms);
    });
    s.once('error', reject);
  });
}

async function main(): Promise<void> {
  const job = JSON.parse(await readFile(process.argv[2]!, 'utf8')) as Job;
  const tls: number[] = [];
  const tlsCpu0 = cpuSeconds(job.serverPid);
  for (let i = 0; i < job.rounds; i++) tls.push(await tlsOnce(job));
  const serverCpuMsPerTlsConnect = ((cpuSeconds(job.serverPid) - tlsCpu0) * 1000) / job.rounds;
  const options: ClientOptions = {
    server: { host: '127.0.0.1', port: job.tlsPort },
    serverName: 'localhost',
    caPem: job.caPem,
    equipmentId: job.equipmentId,
    // Derived once (scrypt): a fresh client below should not time the password's derivation.
    accessKey: await deriveAccessKey(job.password, job.equipmentId),
    service: job.service,
    accept: { host: '127.0.0.1', port: 0 },
    // A whole rendezvous per open(): what this measures.
    sessionIdleMs: 0,
  };
  const fresh: number[] = [];
  for (let i = 0; i < Math.min(job.rounds, 30); i++) {
    forgetServerSessions();
    const c = createClient(options);
    await c.start();
    const t0 = performance.now();
    const tunnel = await c.open(AbortSignal.timeout(30_000));
    fresh.push(performance.now() - t0);
    tunnel.stream.destroy();
    await c.stop();
  }
  const client = createClient(options);
  await client.start();
  const once = async (): Promise<number> => {
    const t0 = performance.now();
    const tunnel = await client.open(AbortSignal.timeout(30_000));
    const ms = performance.now() - t0;
    tunnel.stream.destroy();
    return ms;
  };
  await once(); // warm-up
  const sequential: number[] = [];
  const seq0 = { server: cpuSeconds(job.serverPid), agent: cpuSeconds(job.agentPid), client: cpuSeconds(process.pid) };
  for (let i = 0; i < job.rounds; i++) sequential.push(await once());
  const perSequential = (now: number, before: number): number => ((now - before) * 1000) / job.rounds;
  const sequentialCpu = {
    serverCpuMsPerRequest: perSequential(cpuSeconds(job.serverPid), seq0.server),
    agentCpuMsPerRequest: perSequential(cpuSeconds(job.agentPid), seq0.agent),
    clientCpuMsPerRequest: perSequential(cpuSeconds(process.pid), seq0.client),
  };
  const concurrent: number[] = [];
  let failures = 0;
  const until = performance.now() + job.seconds * 1000;
  const cpu0 = { server: cpuSeconds(job.serverPid), agent: cpuSeconds(job.agentPid), client: cpuSeconds(process.pid) };
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (performance.now() < until) {
        try {
          concurrent.push(await once());
        } catch {
          failures++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const n = Math.max(1, concurrent.length);
  const cpuMs = {
    serverCpuMsPerRequest: ((cpuSeconds(job.serverPid) - cpu0.server) * 1000) / n,
    agentCpuMsPerRequest: ((cpuSeconds(job.agentPid) - cpu0.agent) * 1000) / n,
    clientCpuMsPerRequest: ((cpuSeconds(process.pid) - cpu0.client) * 1000) / n,
  };
  await client.stop();
  process.stdout.write(
    `${JSON.stringify({
      tlsConnect: { ...summary(tls), serverCpuMsPerTlsConnect },
      sequential: { ...summary(sequential), ...sequentialCpu },
      freshClient: summary(fresh),
      concurrent: {
        ...summary(concurrent),
        concurrency: job.concurrency,
        requestsPerSecond: concurrent.length / elapsed,
        failures,
        ...cpuMs,
      },
    })}\n`,
  );
}

// The bench stops this process with SIGTERM after its line: exit normally so --cpu-prof writes its profile.
process.once('SIGTERM', () => process.exit(0));

main().catch((err) => {
  process.stderr.write(`connect-load: ${(err as Error).stack}\n`);
  process.exit(1);
});
