#!/usr/bin/env node
/**
 * npm run fuzz -- --packets N: hostile traffic against the running programs (the "hostile users"
 * issue). Starts the real server and agent on loopback (scripts/fuzz/programs.ts), sends N random
 * and mutated packets at the server's UDP registration and probe ports, its TLS port (raw garbage
 * and mutated ClientHellos; mutated frames after a real handshake), the agent's UDP socket and its
 * reverse port, while the real agent keeps registering and a real client keeps connecting.
 * The last line is the verdict (scripts/fuzz/report.ts); the exit code is non-zero on a crash, a
 * lost registration or connect, or an answer larger than what was sent.
 *
 * Options: --packets N (default 1,000,000), --seed S, --min-seconds S (spread the packets over at
 * least this long, so that the real agent registers during the flood; 0 = flat out),
 * --kill server|agent (self-test: SIGKILL that program mid-run; the run must then fail).
 */
import { TLS_HANDSHAKE_TIMEOUT_MS } from '../agent/protocol/constants.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRng } from './fuzz/rng.js';
import { createMutator, type Mutator } from './fuzz/mutator.js';
import { clientHelloSeed, frameSeeds, reverseSeeds, udpSeeds } from './fuzz/seeds.js';
import { createUdpFlood, UDP_FUZZ_MAX_BYTES, type FloodStats } from './fuzz/udp-flood.js';
import { createStreamFuzz, type StreamStats } from './fuzz/stream-fuzz.js';
import { ECHO_SERVICE, FUZZ_REGISTER_INTERVAL_MS, startSystem, type ProgramName, type SystemUnderFuzz } from './fuzz/programs.js';
import { sampleProcess, tcpStatesOf, udpPortsOf, type ProcessSample } from './fuzz/process-stats.js';
import { registrationLoss, snapshotRegistrations } from './fuzz/registration-watch.js';
import { createClientProber } from './fuzz/client-prober.js';
import { fetchMetrics, registrationOutcomes } from './fuzz/server-metrics.js';
import { formatLastLine, row, verdict, type FuzzFigures } from './fuzz/report.js';
import { FRAME_HEADER_BYTES, FRAME_MAX_PAYLOAD_BYTES } from '../agent/protocol/constants.js';
import { REVERSE_TOKEN_BYTES } from '../agent/protocol/keys.js';

const DEFAULT_PACKETS = 1_000_000;
/** A little longer than the agent's registration interval: every run sees at least one real registration under fire. */
const DEFAULT_MIN_SECONDS = Math.ceil(FUZZ_REGISTER_INTERVAL_MS / 1000) + 1;
/** Whatever happens, the fuzzing itself stops after this long. */
const MAX_FUZZ_MS = 10 * 60_000;
/** Connect attempts the real client makes at the least, even in a short run. */
const MIN_CONNECT_ATTEMPTS = 2;
const MIN_CONNECTS_WAIT_MS = 45_000;
/**
 * After the run: how long descriptors may take to be released. The longest deadline of a listener
 * is the TLS port's: a handshake (10 s) and then a first frame (10 s) before a connection is dropped.
 */
const FD_SETTLE_MS = 2 * TLS_HANDSHAKE_TIMEOUT_MS + 2_000;
const FD_POLL_MS = 250;
const SETTLE_BEFORE_MS = 1_000;
const MIB_KIB = 1024;

/** Shares of the packets, by target. UDP is cheap and gets the bulk; TCP targets cost a connection each. */
const SHARES = { registrationUdp: 0.49, probeUdp: 0.24, agentUdp: 0.25, reversePort: 0.008, tlsRaw: 0.006, tlsFrames: 0.006 } as const;
const STREAM_MAX_BYTES = 2048;
const FRAME_FUZZ_MAX_BYTES = FRAME_HEADER_BYTES + FRAME_MAX_PAYLOAD_BYTES + 64;
const REVERSE_FUZZ_MAX_BYTES = REVERSE_TOKEN_BYTES * 4;

interface Args {
  readonly packets: number;
  readonly seed: number;
  readonly minSeconds: number;
  readonly kill: ProgramName | null;
}

function parse(argv: readonly string[]): Args {
  const { values } = parseArgs({
    args: [...argv],
    options: { packets: { type: 'string' }, seed: { type: 'string' }, 'min-seconds': { type: 'string' }, kill: { type: 'string' } },
    strict: true,
  });
  const int = (name: string, v: string | undefined, def: number, min: number, max: number): number => {
    const n = v === undefined ? def : Number(v.replaceAll(',', '').replaceAll('_', ''));
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name}: expected an integer in ${min}..${max}, found ${v}`);
    return n;
  };
  if (values.kill !== undefined && values.kill !== 'server' && values.kill !== 'agent')
    throw new Error(`--kill: expected server or agent, found ${values.kill}`);
  return Object.freeze({
    packets: int('packets', values.packets, DEFAULT_PACKETS, 100, 100_000_000),
    seed: int('seed', values.seed, 1 + Math.floor(Math.random() * 0xfffffffe), 1, 0xffffffff),
    minSeconds: int('min-seconds', values['min-seconds'], DEFAULT_MIN_SECONDS, 0, 3600),
    kill: (values.kill as ProgramName | undefined) ?? null,
  });
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function trySample(pid: number): ProcessSample | null {
  try {
    return sampleProcess(pid);
  } catch {
    return null; // the process is gone: its crash is reported, its growth is not measurable
  }
}

/** Poll until both programs' descriptor counts are back to the baseline, within FD_SETTLE_MS (every listener's deadline). */
async function settledSamples(
  sys: SystemUnderFuzz,
  before: Record<ProgramName, ProcessSample | null>,
): Promise<Record<ProgramName, ProcessSample | null>> {
  const sample = (): Record<ProgramName, ProcessSample | null> => ({
    server: trySample(sys.pids.server),
    agent: trySample(sys.pids.agent),
  });
  const end = performance.now() + FD_SETTLE_MS;
  let last = sample();
  while (performance.now() < end) {
    const back = (['server', 'agent'] as const).every((p) => !last[p] || !before[p] || last[p]!.fds <= before[p]!.fds);
    if (back) break;
    await sleep(FD_POLL_MS);
    last = sample();
  }
  return last;
}

/** Sockets a program still holds after the peer closed them: CLOSE_WAIT, and those the kernel already closed. */
function heldAfterPeerClosed(states: Readonly<Record<string, number>>): number {
  return (states.CLOSE_WAIT ?? 0) + (states.UNLISTED ?? 0);
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-fuzz-'));
  let sys: SystemUnderFuzz | null = null;
  try {
    const rng = createRng(args.seed);
    say(
      `fuzz: seed ${args.seed}, ${args.packets} packets over at least ${args.minSeconds} s; starting the server and the agent on loopback`,
    );
    sys = await startSystem({ dir });
    const s = sys.setup;
    const keys = { equipmentId: s.equipmentId, masterKey: s.masterKey, password: s.password };
    const agentUdpPorts = udpPortsOf(sys.pids.agent);
    if (agentUdpPorts.length === 0) throw new Error('the agent has no UDP socket in /proc');
    say(
      `targets: server udp ${s.udpPort}, probe udp ${sys.probePort}, tls ${s.tlsPort}; agent udp ${agentUdpPorts.join(',')}, reverse ${sys.reversePort}`,
    );

    const mutator = (maxBytes: number): Mutator => createMutator({ rng, maxBytes });
    const udp = udpSeeds(keys);
    const count = (share: number): number => Math.max(1, Math.round(args.packets * share));
    const counts = {
      registrationUdp: count(SHARES.registrationUdp),
      probeUdp: count(SHARES.probeUdp),
      reversePort: count(SHARES.reversePort),
      tlsRaw: count(SHARES.tlsRaw),
      tlsFrames: count(SHARES.tlsFrames),
    };
    const agentUdpCount = Math.max(1, args.packets - Object.values(counts).reduce((a, b) => a + b, 0));
    const rate = (n: number): number => (args.minSeconds > 0 ? n / args.minSeconds : 0);
    const mutators = {
      udp: mutator(UDP_FUZZ_MAX_BYTES),
      tls: mutator(STREAM_MAX_BYTES),
      frames: mutator(FRAME_FUZZ_MAX_BYTES),
      reverse: mutator(REVERSE_FUZZ_MAX_BYTES),
    };
    const floods = [
      createUdpFlood({
        name: 'server udp (registration)',
        port: s.udpPort,
        seeds: udp,
        mutator: mutators.udp,
        rng,
        ratePerS: rate(counts.registrationUdp),
      }),
      createUdpFlood({
        name: 'server udp (probe port)',
        port: sys.probePort,
        seeds: udp,
        mutator: mutators.udp,
        rng,
        ratePerS: rate(counts.probeUdp),
      }),
    ];
    const agentFlood = createUdpFlood({
      name: 'agent udp',
      port: agentUdpPorts[0]!,
      seeds: udp,
      mutator: mutators.udp,
      rng,
      ratePerS: rate(agentUdpCount),
    });
    const streams = [
      createStreamFuzz({
        name: 'server tls (raw tcp)',
        port: s.tlsPort,
        seeds: [await clientHelloSeed()],
        mutator: mutators.tls,
        rng,
        maxBytes: STREAM_MAX_BYTES,
      }),
      createStreamFuzz({
        name: 'server tls (frames)',
        port: s.tlsPort,
        seeds: await frameSeeds(keys),
        mutator: mutators.frames,
        rng,
        maxBytes: FRAME_FUZZ_MAX_BYTES,
        secure: { caPem: s.caPem },
        concurrency: 4,
      }),
      createStreamFuzz({
        name: 'agent reverse port',
        port: sys.reversePort,
        seeds: await reverseSeeds(keys),
        mutator: mutators.reverse,
        rng,
        maxBytes: REVERSE_FUZZ_MAX_BYTES,
      }),
    ];
    const streamCounts = [counts.tlsRaw, counts.tlsFrames, counts.reversePort];
    for (const f of [...floods, agentFlood]) await f.start();

    await sleep(SETTLE_BEFORE_MS);
    const before = { server: sampleProcess(sys.pids.server), agent: sampleProcess(sys.pids.agent) };
    const regBefore = await snapshotRegistrations(sys);
    const heldBefore = {
      server: heldAfterPeerClosed(tcpStatesOf(sys.pids.server)),
      agent: heldAfterPeerClosed(tcpStatesOf(sys.pids.agent)),
    };
    const prober = createClientProber({ setup: s, service: ECHO_SERVICE });
    prober.start();
    const killer = args.kill
      ? setTimeout(() => void process.kill(sys!.pids[args.kill!], 'SIGKILL'), Math.max(1000, (args.minSeconds * 1000) / 2))
      : undefined;

    const t0 = performance.now();
    const deadline = t0 + MAX_FUZZ_MS;
    await Promise.all([
      floods[0]!.run(counts.registrationUdp, deadline),
      floods[1]!.run(counts.probeUdp, deadline),
      agentFlood.run(agentUdpCount, deadline),
      ...streams.map((st, i) => st.run(streamCounts[i]!, deadline)),
    ]);
    const fuzzMs = performance.now() - t0;
    clearTimeout(killer);
    const connectsBy = performance.now() + MIN_CONNECTS_WAIT_MS;
    while (prober.stats().attempts < MIN_CONNECT_ATTEMPTS && performance.now() < connectsBy) await sleep(200);
    await prober.stop();
    await Promise.all([...floods, agentFlood].map((f) => f.stop()));
    const crashedBefore = new Set(sys.crashes().map((c) => c.program));
    const regAfter = crashedBefore.size === 0 ? await snapshotRegistrations(sys) : null;
    const after = await settledSamples(sys, before);
    const tcpStates = {
      server: crashedBefore.has('server') ? {} : tcpStatesOf(sys.pids.server),
      agent: crashedBefore.has('agent') ? {} : tcpStatesOf(sys.pids.agent),
    };
    const outcomes = crashedBefore.has('server') ? {} : registrationOutcomes(await fetchMetrics(sys.metricsPort));

    // --- report ---
    const floodStats: FloodStats[] = [...floods, agentFlood].map((f) => f.stats());
    const streamStats: StreamStats[] = streams.map((st) => st.stats());
    const packets = floodStats.reduce((a, f) => a + f.packets, 0) + streamStats.reduce((a, st) => a + st.packets, 0);
    const toServerUdp = floodStats.slice(0, 2);
    const sentToServer = toServerUdp.reduce((a, f) => a + f.bytesSent, 0);
    const answered = toServerUdp.reduce((a, f) => a + f.bytesReceived, 0);
    say('');
    say(`fuzzed for ${(fuzzMs / 1000).toFixed(1)} s: ${Math.round(packets / (fuzzMs / 1000))} packets/s in all`);
    say(row('target', 'packets', 'bytes sent', 'bytes back', 'packets/s'));
    for (const f of floodStats) say(row(f.name, f.packets, f.bytesSent, f.bytesReceived, Math.round(f.packets / (f.elapsedMs / 1000))));
    for (const st of streamStats) say(row(st.name, st.packets, st.bytesSent, st.bytesReceived, `${st.connections} conns`));
    for (const st of streamStats) {
      say(
        `  ${st.name}: endings ${JSON.stringify(st.endings)}; not closed by the target in time ${JSON.stringify(st.notClosedByTarget)}${st.handshakeFailures ? `; failed handshakes ${st.handshakeFailures}` : ''}`,
      );
    }
    say(`  mutants by strategy (udp): ${JSON.stringify(mutators.udp.counts())}`);
    say(`  server registration outcomes (metrics, whole life): ${JSON.stringify(outcomes)}`);
    const parsed = Object.values(outcomes).reduce((a, b) => a + b, 0);
    // The rest never reached the program: the kernel drops datagrams when the server's socket buffer is full.
    say(`  the server handled ${parsed} of the ${floodStats[0]!.packets} datagrams sent to its registration port`);
    const loss = regAfter ? registrationLoss(regBefore, regAfter) : null;
    say(
      `  real agent registrations: ${loss ? `sent ${loss.sent}, accepted ${loss.accepted}, no-ack warnings ${loss.noAck}, lost ${loss.lost}` : 'not measurable (a program crashed)'}`,
    );
    const client = prober.stats();
    say(`  real client connects: ${client.successes} ok, ${client.failures} failed, of ${client.attempts}`);
    for (const n of client.failureNotes) say(`    failed connect: ${n}`);
    const growth = (p: ProgramName): { rssKiB: number; fds: number } | null =>
      after[p] && before[p] ? { rssKiB: after[p]!.rssKiB - before[p].rssKiB, fds: after[p]!.fds - before[p].fds } : null;
    for (const p of ['server', 'agent'] as const) {
      const g = growth(p);
      say(
        `  ${p}: RSS ${before[p].rssKiB} -> ${after[p]?.rssKiB ?? 'gone'} KiB, fds ${before[p].fds} -> ${after[p]?.fds ?? 'gone'}${g ? ` (${g.fds >= 0 ? '+' : ''}${g.fds})` : ''}; tcp ${JSON.stringify(tcpStates[p])}; log lines by level ${JSON.stringify(sys.logs(p).byLevel)}`,
      );
      for (const w of sys.logs(p).warnings.slice(0, 5)) say(`    ${p} warned: ${w.slice(0, 240)}`);
    }
    const crashes = sys.crashes();
    const held = (p: ProgramName): number => heldAfterPeerClosed(tcpStates[p]) - heldBefore[p];
    // Sockets the peer closed and the program never did: the known leaks (server CLOSE_WAIT, reverse port half-closed).
    say(
      `leaked sockets the peer had closed (CLOSE_WAIT or closed, descriptor still held): server ${held('server')}, agent ${held('agent')}`,
    );
    for (const c of crashes)
      say(
        `  CRASH: ${c.program} exited (code ${c.code}, signal ${c.signal}) at +${c.atMs} ms${args.kill === c.program ? ' (the --kill self-test)' : ''}`,
      );
    const figures: FuzzFigures = {
      packets,
      crashes: crashes.length,
      answeredRatio: sentToServer > 0 ? answered / sentToServer : 0,
      rssGrowthMiB: ((growth('server')?.rssKiB ?? 0) + (growth('agent')?.rssKiB ?? 0)) / MIB_KIB,
      fdGrowth: (growth('server')?.fds ?? 0) + (growth('agent')?.fds ?? 0),
      lost: (loss?.lost ?? 0) + client.failures,
    };
    const problems = verdict(figures);
    say(problems.length === 0 ? 'verdict: pass' : `verdict: FAIL: ${problems.join('; ')}`);
    say(formatLastLine(figures));
    return problems.length === 0 ? 0 : 1;
  } finally {
    await sys?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`fuzz failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(2);
  },
);
