/**
 * What one TLS handshake to the server costs, by server key and with or without resumption
 * (npm run bench -- server): a plain Node TLS server (tls-echo.ts, its own process) with an RSA
 * 2048 or an ECDSA P-256 certificate from the same RSA CA, and this process connecting as the
 * client and agent do (CA-verified, by name). Server CPU per handshake from /proc (10 ms ticks,
 * so many handshakes), client time per connect p50. Resumed: connectToServer's remembered ticket.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert, type ServerKeyType } from '../../agent/pki/server-cert.js';
import { connectToServer, forgetServerSessions } from '../../agent/rendezvous/server-tls.js';
import { cpuSeconds } from './cpu-time.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface HandshakeFigure {
  readonly serverCpuMs: number;
  readonly clientCpuMs: number;
  readonly p50Ms: number;
  readonly resumedShare: number;
}

async function measure(port: number, caPem: string, pid: number, n: number, resume: boolean): Promise<HandshakeFigure> {
  forgetServerSessions();
  const one = async (): Promise<{ ms: number; reused: boolean }> => {
    const t0 = performance.now();
    const s = await connectToServer({ host: '127.0.0.1', port, serverName: 'localhost', caPem, resume });
    const ms = performance.now() - t0;
    const reused = s.isSessionReused();
    s.end();
    s.resume();
    await once(s, 'close');
    return { ms, reused };
  };
  await one(); // warm-up (and the first ticket)
  const times: number[] = [];
  let reused = 0;
  const cpu0 = { server: cpuSeconds(pid), client: cpuSeconds(process.pid) };
  for (let i = 0; i < n; i++) {
    const r = await one();
    times.push(r.ms);
    if (r.reused) reused++;
  }
  times.sort((a, b) => a - b);
  return {
    serverCpuMs: ((cpuSeconds(pid) - cpu0.server) * 1000) / n,
    clientCpuMs: ((cpuSeconds(process.pid) - cpu0.client) * 1000) / n,
    p50Ms: times[Math.floor(n / 2)]!,
    resumedShare: reused / n,
  };
}

export async function handshakeCosts(n: number): Promise<Record<string, HandshakeFigure>> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-handshake-'));
  const ca = createCa();
  const out: Record<string, HandshakeFigure> = {};
  try {
    for (const keyType of ['rsa', 'ec'] as ServerKeyType[]) {
      const cert = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', '127.0.0.1'], keyType });
      await writeFile(join(dir, `${keyType}.pem`), cert.certPem);
      await writeFile(join(dir, `${keyType}.key`), cert.keyPem);
      const child = spawn(process.execPath, [join(here, 'tls-echo.js'), join(dir, `${keyType}.pem`), join(dir, `${keyType}.key`)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      try {
        const [line] = (await once(child.stdout.setEncoding('utf8'), 'data')) as [string];
        const { port } = JSON.parse(line) as { port: number };
        out[`${keyType}-full`] = await measure(port, ca.certPem, child.pid!, n, false);
        out[`${keyType}-resumed`] = await measure(port, ca.certPem, child.pid!, n, true);
      } finally {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    }
  } finally {
    forgetServerSessions();
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}
