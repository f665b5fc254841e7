/**
 * `--listen`: a local TCP port that carries each accepted connection through its own tunnel
 * to the device's service (like `ssh -L`). The first tunnel may be opened ahead of time, so
 * that a wrong password or an offline device is reported at start, not at first use.
 */
import { closeServer, listenOn } from '../common/listen.js';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { join } from '../common/pipe.js';
import type { HostPort } from '../common/endpoint-parse.js';
import type { Client, Tunnel } from './client.js';

export interface LocalForwardOptions {
  readonly client: Client;
  readonly listen: HostPort;
  readonly logger: Logger;
  /** A tunnel already open, used for the first local connection. */
  readonly first?: Tunnel;
}

export interface LocalForward {
  start(): Promise<{ address: string; port: number }>;
  stop(): Promise<void>;
}

export function createLocalForward(o: LocalForwardOptions): LocalForward {
  let spare: Tunnel | undefined = o.first;
  const conns = new Set<Socket>();
  const aborter = new AbortController();
  let server: Server | null = null;

  async function serve(local: Socket): Promise<void> {
    conns.add(local);
    local.once('close', () => conns.delete(local));
    local.pause();
    let tunnel: Tunnel;
    try {
      if (spare && !spare.stream.destroyed) {
        tunnel = spare;
        spare = undefined;
      } else tunnel = await o.client.open(aborter.signal);
    } catch (err) {
      o.logger.error({ err: (err as Error).message, code: (err as { code?: string }).code }, 'could not open a tunnel for a local connection');
      local.destroy();
      return;
    }
    local.resume();
    await join(local, tunnel.stream);
  }

  return {
    async start() {
      const s = createServer({ allowHalfOpen: true }, (sock) => void serve(sock));
      await listenOn(s, o.listen.port, o.listen.host);
      server = s;
      const a = s.address();
      return typeof a === 'object' && a ? { address: a.address, port: a.port } : { address: o.listen.host, port: o.listen.port };
    },
    async stop() {
      aborter.abort();
      spare?.stream.destroy();
      const s = server;
      server = null;
      if (s) await closeServer(s, conns);
    },
  };
}
