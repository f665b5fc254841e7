/**
 * The time line of one connection (npm run bench -- server): where the time to connect goes.
 * The real server and agent run at log level info; their JSON log lines carry `time` (ms, the
 * same clock on one machine). The client library runs in this process with a logger that keeps
 * its lines. Connections are made one at a time, so every line between the start of open() and
 * the echo of the first byte belongs to that connection. Phases are the existing log lines:
 *
 *   client TLS + request   open() -> client "S203 connection request sent" (TLS to the server, HELLO)
 *   server: request in      -> server "S203 connection request received"
 *   notify                  -> server "S205 notification sent" (or "S205 wake sent" over the device's kept
 *                              connection), agent "S205 ... notification received" (or "... wake received")
 *   device attach           -> agent "S206 connected to the server" (its TLS; "S206 attach" over a kept
 *                              connection), server "S206 device connected"
 *   verdict                 -> agent "S207 request authorised", server "S207 device verdict relayed", client "S207 device accepted"
 *   relay paired            -> server "relay session paired" (relayed connections only)
 *   path race + PSK         -> agent "... channel up", client "... channel up" (open() resolves)
 *   first byte              -> one byte's echo through the tunnel
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createClient } from '../../agent/client/client.js';
import { createLoopbackSetup } from '../lib/loopback-setup.js';
import { freePort } from '../lib/free-port.js';
import { startProgram, type LogLine, type Program } from '../lib/program.js';
import { serverNodeFlags } from '../lib/server-unit.js';
import { agentNodeFlags } from '../lib/agent-unit.js';
import { startEchoServer } from './throughput.js';

interface Mark {
  readonly who: 'client' | 'server' | 'agent';
  readonly msg: string;
  readonly t: number;
}

/** The phases printed, each: the first log line (who, message prefix) that ends it. */
export const PHASES: readonly { name: string; who: Mark['who'] | 'bench'; prefix: string }[] = [
  { name: 'client TLS to the server + request sent', who: 'client', prefix: 'S203 connection request sent' },
  { name: 'server: request received', who: 'server', prefix: 'S203 connection request received' },
  // With the device's kept connection (issue 15): the wake over it, and no new TLS for the attach.
  {
    name: 'server: notification sent (UDP, or the wake over a kept connection)',
    who: 'server',
    prefix: 'S205 notification sent|S205 wake sent',
  },
  {
    name: 'agent: notification received',
    who: 'agent',
    prefix: 'S205 connection-request notification received|S205 connection-request wake received',
  },
  {
    name: 'agent: device attach sent (a new TLS connection unless kept)',
    who: 'agent',
    prefix: 'S206 connected to the server|S206 attach',
  },
  { name: 'server: device attached, request forwarded', who: 'server', prefix: 'S206 device connected' },
  { name: 'agent: verdict (authorised)', who: 'agent', prefix: 'S207 request authorised' },
  { name: 'client: verdict received', who: 'client', prefix: 'S207 device accepted' },
  // Relayed connections only ('-' on the direct ones): both legs joined, the PSK handshake runs through the relay next.
  { name: 'server: relay paired (relayed only)', who: 'server', prefix: 'relay session paired' },
  {
    name: 'agent: path race won, PSK handshake done',
    who: 'agent',
    prefix: 'S208 direct channel up|end-to-end channel up through the relay',
  },
  { name: 'client: channel up (open() resolves)', who: 'client', prefix: 'S208 direct channel up|channel up through the relay' },
  { name: 'first byte echoed through the tunnel', who: 'bench', prefix: '' },
];

export interface Timeline {
  readonly totalMs: number;
  readonly connectMs: number;
  /** Per phase: ms since open() began, NaN if its line was not seen. */
  readonly at: readonly number[];
}

function pick(marks: readonly Mark[], who: Mark['who'], prefix: string, from: number, to: number): number {
  const re = new RegExp(`^(?:${prefix})`);
  const m = marks.find((x) => x.who === who && x.t >= from - 1 && x.t <= to + 1 && re.test(x.msg));
  return m ? m.t - from : NaN;
}

const toMarks = (who: Mark['who'], lines: readonly LogLine[]): Mark[] =>
  lines.filter((l) => typeof l.time === 'number' && typeof l.msg === 'string').map((l) => ({ who, msg: l.msg!, t: l.time as number }));

/** `rounds` sequential connections, direct (the patent's dial) and relayed (a closed advertised port). */
export async function connectionTimelines(rounds: number): Promise<{ direct: Timeline[]; relayed: Timeline[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-timeline-'));
  const programs: Program[] = [];
  const echo = await startEchoServer();
  try {
    const setup = await createLoopbackSetup({
      dir,
      services: { echo: `127.0.0.1:${echo.port}` },
      directDialOnly: true,
      // Offers of the direct runs that the client never joined hold the device's relay share until the join deadline.
      serverExtra: [
        '[limits]\nrequests_per_source_per_min = 0\nrequests_per_device_per_min = 0',
        '[relay]\nmax_sessions_per_device = 100000\nmax_sessions_per_source = 100000',
      ].join('\n'),
    });
    const server = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    const agent = startProgram('agent', ['--config', setup.agentConfig], { nodeArgs: agentNodeFlags() });
    programs.push(agent);
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
    const clientLines: LogLine[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void clientLines.push(JSON.parse(s) as LogLine) });
    const run = async (advertisePort?: number): Promise<Timeline[]> => {
      const client = createClient({
        server: { host: '127.0.0.1', port: setup.tlsPort },
        serverName: 'localhost',
        caPem: setup.caPem,
        equipmentId: setup.equipmentId,
        password: setup.password,
        service: 'echo',
        accept: { host: '127.0.0.1', port: 0 },
        // A whole rendezvous per open(): what this measures.
        sessionIdleMs: 0,
        logger,
        ...(advertisePort ? { advertisePort } : {}),
      });
      await client.start();
      const out: Timeline[] = [];
      try {
        for (let i = 0; i <= rounds; i++) {
          const t0 = Date.now();
          const tunnel = await client.open(AbortSignal.timeout(30_000));
          const connected = Date.now();
          tunnel.stream.write(Buffer.from([0x2a]));
          await new Promise<void>((resolve, reject) => {
            tunnel.stream.once('data', () => resolve());
            tunnel.stream.once('error', reject);
          });
          const end = Date.now();
          tunnel.stream.destroy();
          await new Promise((r) => setTimeout(r, 150)); // the server's and agent's lines are out
          if (i === 0) continue; // warm-up: the first connection makes a full TLS handshake
          const marks = [...toMarks('client', clientLines), ...toMarks('server', server.lines), ...toMarks('agent', agent.lines)];
          out.push({
            totalMs: end - t0,
            connectMs: connected - t0,
            at: PHASES.map((p) => (p.who === 'bench' ? end - t0 : pick(marks, p.who, p.prefix, t0, end))),
          });
        }
      } finally {
        await client.stop();
      }
      return out;
    };
    const direct = await run();
    const relayed = await run(await freePort());
    return { direct, relayed };
  } finally {
    await Promise.all(programs.map((p) => p.stop()));
    await echo.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The connection with the median total time. */
export function medianTimeline(xs: readonly Timeline[]): Timeline | null {
  if (xs.length === 0) return null;
  return [...xs].sort((a, b) => a.totalMs - b.totalMs)[Math.floor(xs.length / 2)]!;
}

export function formatTimeline(title: string, t: Timeline | null): string {
  if (!t) return `${title}: no connection\n`;
  let out = `\n${title} (the median of the runs; ms since open() began, and the step from the line before)\n\n| phase | at (ms) | step (ms) |\n|---|---|---|\n`;
  let prev = 0;
  PHASES.forEach((p, i) => {
    const at = t.at[i]!;
    out += `| ${p.name} | ${Number.isFinite(at) ? at.toFixed(0) : '-'} | ${Number.isFinite(at) ? (at - prev).toFixed(0) : '-'} |\n`;
    if (Number.isFinite(at)) prev = at;
  });
  return out;
}
