/**
 * A throwaway Redis Cluster from the Debian package, for specs and benchmarks: six redis-server
 * processes in cluster mode on free loopback ports (client port and cluster-bus port each picked
 * free), joined by `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes` into three
 * primaries with one replica each. No persistence. `killPrimary()` SIGKILLs a primary so its
 * replica takes over (cluster-node-timeout is short here so that takes about a second, not 15).
 * With `password`, every node requires it (requirepass) and the replicas use it (masterauth).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { REDIS_MISSING } from './redis-process.js';

export interface ClusterNodeProcess {
  readonly port: number;
  readonly pid: number | undefined;
  readonly running: boolean;
}

export interface RedisCluster {
  /** Seed nodes as "host:port" (all six; a client needs only one that answers). */
  readonly seeds: readonly string[];
  readonly nodes: readonly ClusterNodeProcess[];
  /** The ports of the current primaries (asked of the cluster). */
  primaries(): Promise<number[]>;
  /** The port of the primary serving `key`'s slot now. */
  primaryFor(key: string): Promise<number>;
  /** SIGKILL the primary on `port` (default: the first primary); resolves once the cluster is ok again, with a replica promoted. */
  killPrimary(port?: number): Promise<{ killed: number; failoverMs: number }>;
  /** redis-server process IDs of the primaries (benchmarks read their CPU time). */
  primaryPids(): Promise<number[]>;
  stop(): Promise<void>;
}

const NODE_TIMEOUT_MS = 1000;
// Six redis-servers at once on a loaded 2-core CI machine: one took over 20 s to answer once.
const START_TIMEOUT_MS = 60_000;

function cli(port: number, args: readonly string[], auth: readonly string[] = []): string {
  const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...auth, ...args], { encoding: 'utf8', timeout: 10_000 });
  if (r.error)
    throw (r.error as NodeJS.ErrnoException).code === 'ENOENT'
      ? new Error('redis-cli is not installed (Debian package redis-tools)')
      : r.error;
  return r.stdout;
}

async function waitFor(what: string, ok: () => boolean, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`redis cluster: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Rows of CLUSTER NODES as seen from `port`: [port, role flags]. */
function clusterNodes(port: number, auth: readonly string[]): { port: number; flags: string }[] {
  return cli(port, ['cluster', 'nodes'], auth)
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.split(' ');
      return { port: Number(/:(\d+)@/.exec(f[1]!)?.[1]), flags: f[2]! };
    });
}

/** A redis-server that exited while the cluster started (its port taken meanwhile, most likely). */
class NodeExitedAtStart extends Error {}
const START_ATTEMPTS = 3;

/**
 * Six redis-servers on free ports: a port found free can be taken before redis-server binds it (an
 * outgoing connection of another spec picks the same ephemeral port), and that node exits at once.
 * Such a start is made again on new ports (a CI run once waited 60 s on a node that had exited).
 */
export async function startRedisCluster(o: { primaries?: number; password?: string } = {}): Promise<RedisCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRedisClusterOnce(o);
    } catch (err) {
      if (!(err instanceof NodeExitedAtStart) || attempt >= START_ATTEMPTS) throw err;
    }
  }
}

async function startRedisClusterOnce(o: { primaries?: number; password?: string }): Promise<RedisCluster> {
  const primaries = o.primaries ?? 3;
  // With a password: every node requires it (requirepass) and replicas use it (masterauth).
  const auth = o.password === undefined ? [] : ['-a', o.password, '--no-auth-warning'];
  const cl = (port: number, args: readonly string[]): string => cli(port, args, auth);
  const count = primaries * 2;
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-redis-cluster-'));
  const procs: { port: number; child: ChildProcess | null; stderr: string[] }[] = [];
  // Never outlive the process that started them (a spec or bench that crashes).
  const killAll = (): void => {
    for (const p of procs) p.child?.kill('SIGKILL');
  };
  process.once('exit', killAll);
  const stop = async (): Promise<void> => {
    process.off('exit', killAll);
    await Promise.all(
      procs.map(async (p) => {
        const c = p.child;
        p.child = null;
        if (!c || c.exitCode !== null) return;
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        c.kill('SIGKILL');
        await exited;
      }),
    );
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const bus = await freePort();
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--cluster-port',
          String(bus),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          String(NODE_TIMEOUT_MS),
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--loglevel',
          'warning',
          // A replica syncs at once (the default waits 5 s for more replicas to share the transfer).
          '--repl-diskless-sync-delay',
          '0',
          ...(o.password === undefined ? [] : ['--requirepass', o.password, '--masterauth', o.password]),
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const entry = { port, child: child as ChildProcess | null, stderr: [] as string[] };
      procs.push(entry);
      child.stderr?.on('data', (d: Buffer) => void (entry.stderr.length < 50 && entry.stderr.push(d.toString())));
      child.once('exit', () => {
        if (entry.child === child) entry.child = null;
      });
      await new Promise<void>((resolve, reject) => {
        child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new Error(REDIS_MISSING) : err));
        child.once('spawn', () => resolve());
      });
    }
    for (const p of procs)
      await waitFor(`redis-server on ${p.port}`, () => {
        if (p.child === null) throw new NodeExitedAtStart(`redis-server on ${p.port} exited at start: ${p.stderr.join('').trim()}`);
        return cl(p.port, ['ping']).trim() === 'PONG';
      });
    const create = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...procs.map((p) => `127.0.0.1:${p.port}`), '--cluster-replicas', '1', '--cluster-yes', ...auth],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    await waitFor('cluster_state:ok on every node', () => procs.every((p) => cl(p.port, ['cluster', 'info']).includes('cluster_state:ok')));
    // Every replica attached and in sync (a replica that never synced does not take over).
    await waitFor('replicas', () => clusterNodes(procs[0]!.port, auth).filter((n) => n.flags.includes('slave')).length === primaries);
    await waitFor('replicas in sync', () =>
      procs.every((p) => {
        const info = cl(p.port, ['info', 'replication']);
        return info.includes('role:master') || info.includes('master_link_status:up');
      }),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const live = (): { port: number; child: ChildProcess | null }[] => procs.filter((p) => p.child !== null);
  const primaryPorts = (): number[] => {
    const from = live()[0];
    if (!from) return [];
    return clusterNodes(from.port, auth)
      .filter((n) => n.flags.includes('master') && !n.flags.includes('fail'))
      .map((n) => n.port);
  };
  return {
    seeds: procs.map((p) => `127.0.0.1:${p.port}`),
    nodes: procs.map((p) => ({
      port: p.port,
      get pid() {
        return p.child?.pid;
      },
      get running() {
        return p.child !== null;
      },
    })),
    primaries: async () => primaryPorts(),
    async primaryFor(key) {
      const from = live()[0]!.port;
      const slot = Number(cl(from, ['cluster', 'keyslot', key]).trim());
      for (const line of cl(from, ['cluster', 'nodes']).split('\n')) {
        const f = line.split(' ');
        if (!f[2]?.includes('master') || f[2].includes('fail')) continue;
        for (const range of f.slice(8)) {
          const [lo, hi] = range.split('-').map(Number);
          if (slot >= lo! && slot <= (hi ?? lo!)) return Number(/:(\d+)@/.exec(f[1]!)![1]);
        }
      }
      throw new Error(`no primary serves slot ${slot}`);
    },
    async primaryPids() {
      const ports = primaryPorts();
      return procs.filter((p) => ports.includes(p.port) && p.child?.pid !== undefined).map((p) => p.child!.pid!);
    },
    async killPrimary(port) {
      const target = port ?? primaryPorts()[0]!;
      const p = procs.find((x) => x.port === target);
      if (!p?.child) throw new Error(`no running redis-server on ${target}`);
      const c = p.child;
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      const t0 = Date.now();
      c.kill('SIGKILL');
      await exited;
      // The cluster is whole again: every live node says ok and the dead one is no primary.
      await waitFor(
        'a replica to take over',
        () => {
          const ps = primaryPorts();
          return (
            ps.length === primaries &&
            !ps.includes(target) &&
            live().every((x) => cl(x.port, ['cluster', 'info']).includes('cluster_state:ok'))
          );
        },
        30_000,
      );
      return { killed: target, failoverMs: Date.now() - t0 };
    },
    stop,
  };
}
