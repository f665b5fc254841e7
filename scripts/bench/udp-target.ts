#!/usr/bin/env node
/**
 * Benchmark target (its own process, pinned to one core by the orchestrator):
 *   echo                    a bare Node UDP echo server: the practical limit of Node's UDP
 *   register                the server's real registration endpoint, in-memory registry
 *   register-redis URL [REFRESH_MS] [NODE_ID] [no-pipelining]
 *                           the same with the Redis backend; URL may be "cluster:host:port,host:port"
 *                           (Redis Cluster seeds); REFRESH_MS is write on change's refresh period
 *                           (0: every registration written); no-pipelining: one socket write per
 *                           Redis command, issued at once (the behaviour before auto pipelining and write batching)
 * Prints {"port":P} on stdout when ready; on SIGTERM prints {"stats":...} and exits.
 */
import { createSocket } from 'node:dgram';
import { systemClock } from '../../agent/common/clock.js';
import { silentLogger } from '../../agent/common/logger.js';
import { createRedisRegistry } from '../../agent/server/redis-registry.js';
import { createRegistrationEndpoint } from '../../agent/server/registration-endpoint.js';
import { createMemoryRegistry } from '../../agent/server/registry.js';

async function main(): Promise<void> {
  const [mode, masterB64, redisUrl, refreshS, nodeIdArg, pipeliningArg] = process.argv.slice(2);
  if (mode === 'echo') {
    const s = createSocket('udp4');
    s.on('message', (msg, r) => s.send(msg, r.port, r.address));
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    process.stdout.write(`${JSON.stringify({ port: s.address().port, pid: process.pid })}\n`);
    process.once('SIGTERM', () => process.exit(0));
    return;
  }
  const registry = createMemoryRegistry();
  const backend =
    mode === 'register-redis'
      ? createRedisRegistry({
          ...(redisUrl!.startsWith('cluster:') ? { clusterNodes: redisUrl!.slice('cluster:'.length).split(',') } : { url: redisUrl! }),
          ...(refreshS !== undefined ? { refreshAfterMs: Number(refreshS) } : {}),
          nodeId: nodeIdArg ?? 'bench',
          keyPrefix: 'bench:',
          forgetAfterMs: 600_000,
          logger: silentLogger(),
          commandTimeoutMs: 5000,
          ...(pipeliningArg === 'no-pipelining' ? { autoPipelining: false, writeBatchMs: 0 } : {}),
        })
      : undefined;
  await backend?.start();
  const ep = createRegistrationEndpoint({
    host: '127.0.0.1',
    port: 0,
    masterKey: Buffer.from(masterB64!, 'base64'),
    registry,
    clock: systemClock,
    logger: silentLogger(),
    ...(backend ? { backend, sharedWrites: backend } : {}),
  });
  await ep.start();
  process.stdout.write(`${JSON.stringify({ port: ep.address().port, pid: process.pid })}\n`);
  process.once('SIGTERM', () => {
    process.stdout.write(`${JSON.stringify({ stats: ep.counters.snapshot(), devices: registry.size })}\n`);
    process.exit(0);
  });
}

main().catch((err) => {
  process.stderr.write(`udp-target: ${(err as Error).stack}\n`);
  process.exit(1);
});
