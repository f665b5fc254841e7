#!/usr/bin/env node
/**
 * The end-to-end channel's handshake, A/B in one process (issue 15): a TLS context per tunnel (the
 * options the dialer and the client's end passed before) vs the shared contexts of
 * agent/protocol/tunnel-tls.ts. Both ends in this process over loopback TCP, PSK as the real
 * channel, one echoed byte per tunnel; alternating rounds; CPU of both ends per tunnel and p50.
 *   node dist/scripts/bench/tunnel-context.js [tunnels per round, default 200] [rounds, default 3]
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { connect, TLSSocket, type ConnectionOptions } from 'node:tls';
import { TUNNEL_CIPHER } from '../../agent/protocol/constants.js';
import { tunnelClientContext, tunnelServerContext } from '../../agent/protocol/tunnel-tls.js';

const PSK = randomBytes(32);
const IDENTITY = 'bench';
const perTunnel = { ciphers: TUNNEL_CIPHER, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

async function round(shared: boolean, n: number): Promise<{ cpuMs: number; p50Ms: number }> {
  const server = createServer({ noDelay: true }, (raw: Socket) => {
    const s = new TLSSocket(raw, {
      isServer: true,
      ...(shared ? { secureContext: tunnelServerContext() } : perTunnel),
      pskCallback: () => PSK,
    } as unknown as ConstructorParameters<typeof TLSSocket>[1]);
    s.on('data', (d: Buffer) => s.write(d));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const options: ConnectionOptions & { noDelay: boolean } = {
        host: '127.0.0.1',
        port,
        noDelay: true,
        pskCallback: () => ({ psk: PSK, identity: IDENTITY }),
        checkServerIdentity: () => new Error('PSK only'),
        ...(shared ? { secureContext: tunnelClientContext() } : perTunnel),
      };
      const s = connect(options);
      s.once('secureConnect', () => s.write('x'));
      s.once('data', () => (s.destroy(), resolve()));
      s.once('error', reject);
    });
    times.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  await new Promise((r) => server.close(r));
  times.sort((a, b) => a - b);
  return { cpuMs: (cpu.user + cpu.system) / 1000 / n, p50Ms: times[Math.floor(n / 2)]! };
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 200);
  const rounds = Number(process.argv[3] ?? 3);
  const out: Record<string, { cpuMs: number; p50Ms: number }[]> = { perTunnel: [], shared: [] };
  for (let r = 0; r < rounds; r++) {
    out.perTunnel!.push(await round(false, n));
    out.shared!.push(await round(true, n));
  }
  const best = (xs: { cpuMs: number; p50Ms: number }[]) => ({
    cpuMsPerTunnel: Math.min(...xs.map((x) => x.cpuMs)),
    p50Ms: Math.min(...xs.map((x) => x.p50Ms)),
  });
  const a = best(out.perTunnel!);
  const b = best(out.shared!);
  process.stdout.write(
    `${JSON.stringify({ tunnels: n, rounds, perTunnelContext: a, sharedContext: b, cpuRatio: b.cpuMsPerTunnel / a.cpuMsPerTunnel })}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`tunnel-context: ${(err as Error).stack}\n`);
  process.exit(1);
});
