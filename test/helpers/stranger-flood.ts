/**
 * Strangers flooding a device's ID, run inside the lab's strangers namespace:
 * `ip netns exec NS node stranger-flood.js '<FloodPlan JSON>'`. Each request is the security
 * specs' fake client (its own TLS connection, bound to one of the sources in turn) with a
 * made-up password: a sealed request and a wake proof that cannot verify. Requests start on a
 * fixed schedule (not one after another), so a slow answer does not slow the flood. Prints one
 * JSON line: how many were sent, over how long, and the statuses they got (-1: no answer).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { requestAt, type RequestTarget } from './fake-client.js';
import { strangerWake } from './wake.js';

export interface FloodPlan {
  readonly server: { readonly host: string; readonly tlsPort: number; readonly serverName: string };
  readonly caFile: string;
  readonly equipmentId: string;
  readonly sources: readonly string[];
  readonly perSecond: number;
  readonly durationMs: number;
  /** The port the strangers claim to accept the device's connection on (none ever comes). */
  readonly advertisedPort: number;
}

export interface FloodResult {
  readonly sent: number;
  readonly elapsedMs: number;
  /** Status code (or -1) -> count. */
  readonly statuses: Record<string, number>;
}

export const FLOOD_MAX_PER_SECOND = 500;
export const FLOOD_MAX_DURATION_MS = 60_000;
/** After the last request starts, answers are awaited at most this long (a request's own deadline is 15 s). */
const DRAIN_MS = 20_000;

async function flood(plan: FloodPlan): Promise<FloodResult> {
  if (
    !(plan.perSecond > 0 && plan.perSecond <= FLOOD_MAX_PER_SECOND) ||
    !(plan.durationMs > 0 && plan.durationMs <= FLOOD_MAX_DURATION_MS) ||
    plan.sources.length === 0
  ) {
    throw new Error(
      `stranger-flood: needs 0 < perSecond <= ${FLOOD_MAX_PER_SECOND}, 0 < durationMs <= ${FLOOD_MAX_DURATION_MS} and sources; got ${JSON.stringify({ ...plan, sources: plan.sources.length })}`,
    );
  }
  const target: RequestTarget = { ...plan.server, caPem: await readFile(plan.caFile, 'utf8'), equipmentId: plan.equipmentId };
  const gapMs = 1000 / plan.perSecond;
  const total = Math.floor((plan.durationMs / 1000) * plan.perSecond);
  const statuses: Record<string, number> = {};
  const pending: Promise<void>[] = [];
  const started = Date.now();
  for (let i = 0; i < total; i++) {
    const due = started + i * gapMs;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const source = plan.sources[i % plan.sources.length]!;
    pending.push(
      requestAt(target, plan.advertisedPort, { tagKey: randomBytes(32), wake: strangerWake() }, source).then(
        (r) => void (statuses[r.status] = (statuses[r.status] ?? 0) + 1),
        () => void (statuses[-1] = (statuses[-1] ?? 0) + 1),
      ),
    );
  }
  const elapsedMs = Date.now() - started;
  let drainTimer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(pending), new Promise((r) => (drainTimer = setTimeout(r, DRAIN_MS)))]);
  clearTimeout(drainTimer);
  return { sent: total, elapsedMs, statuses };
}

flood(JSON.parse(process.argv[2] ?? '{}') as FloodPlan).then(
  (r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    // Sockets of unanswered requests must not keep the process alive past its report.
    process.exit(0);
  },
  (err: Error) => {
    process.stderr.write(`stranger-flood: ${err.message}\n`);
    process.exit(1);
  },
);
