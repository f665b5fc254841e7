#!/usr/bin/env node
/**
 * UDP load generator (its own process): keeps WINDOW requests outstanding against PORT for SECONDS
 * after a warm-up, and reports answers per second. Mode `register` sends genuine, distinct
 * registrations (pre-computed before the clock starts: DEVICES ids x rounds, timestamps rising per
 * device), so the target does the full work (parse, key derivation and tag check, freshness,
 * registry update, tagged ack). Mode `echo` sends 64-byte datagrams of the same size.
 * Also reports the target's CPU seconds over the window (answers per CPU-second of the target).
 * argv: PORT MODE SECONDS WINDOW MASTER_KEY_B64 DEVICES TARGET_PID [EXTRA_PIDS] [ID_PREFIX] [RATE] [OFFERED] [WARMUP_ANSWERS]
 * (EXTRA_PIDS: comma-separated processes whose CPU counts too, e.g. the Redis primaries; ID_PREFIX:
 * the devices' IDs, so generators against several nodes register distinct devices; RATE: packets
 * prepared per second of run, default 150,000; OFFERED: packets per second sent at a fixed pace
 * whatever the answers (open loop, as a fleet's devices do), instead of WINDOW kept outstanding, 0: closed
 * loop; WARMUP_ANSWERS: answers the warm-up waits for beyond its second, at most 20 s.)
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { UDP_TYPE_COOKIE } from '../../agent/protocol/constants.js';
import { encodeRegister, parseUdpPacket, REGISTER_NONCE_BYTES } from '../../agent/protocol/udp-packets.js';
import { cpuSeconds, cpuTimes } from './cpu-time.js';

const WARMUP_MS = 1000;
/** The warm-up's bound while waiting for each device's first registrations. */
const WARMUP_MAX_MS = 20_000;

/** Cookie requests answered at once per device while fetching cookies (a window, so none is dropped). */
const COOKIE_WINDOW = 256;
const COOKIE_FETCH_TIMEOUT_MS = 30_000;

/** Each device's cookie for this socket: a cookie-less registration draws a COOKIE; resent until every one has answered. */
async function fetchCookies(
  s: Socket,
  port: number,
  ids: readonly string[],
  keys: readonly Buffer[],
  timestampMs: number,
): Promise<Buffer[]> {
  const cookies: (Buffer | undefined)[] = new Array(ids.length);
  const byNonce = new Map<string, number>();
  let got = 0;
  let next = 0;
  const ask = (i: number): void => {
    const nonce = randomBytes(REGISTER_NONCE_BYTES);
    byNonce.set(nonce.toString('hex'), i);
    s.send(encodeRegister({ equipmentId: ids[i]!, timestampMs, nonce }, keys[i]!), port, '127.0.0.1');
  };
  const onMessage = (msg: Buffer): void => {
    try {
      const p = parseUdpPacket(msg).packet;
      if (p.type !== UDP_TYPE_COOKIE) return;
      const i = byNonce.get(p.nonce.toString('hex'));
      if (i === undefined || cookies[i]) return;
      cookies[i] = Buffer.from(p.cookie);
      got++;
      if (next < ids.length) ask(next++);
    } catch {
      /* not a cookie */
    }
  };
  s.on('message', onMessage);
  const deadline = Date.now() + COOKIE_FETCH_TIMEOUT_MS;
  while (next < Math.min(COOKIE_WINDOW, ids.length)) ask(next++);
  while (got < ids.length) {
    if (Date.now() > deadline) throw new Error(`udp-load: only ${got} of ${ids.length} cookies after ${COOKIE_FETCH_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 200));
    // Lost ones are asked again.
    if (next >= ids.length) for (let i = 0; i < ids.length; i++) if (!cookies[i]) ask(i);
  }
  s.off('message', onMessage);
  return cookies as Buffer[];
}

async function main(): Promise<void> {
  const [portS, mode, secondsS, windowS, masterB64, devicesS, pidS] = process.argv.slice(2);
  const targetPid = Number(pidS);
  // A further process whose CPU time counts too (the redis-server behind the target).
  const extraPids = process.argv[9] ? process.argv[9].split(',').map(Number) : null;
  const extraCpuSeconds = (): number => extraPids!.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const idPrefix = process.argv[10] ?? 'BENCH';
  const port = Number(portS);
  const seconds = Number(secondsS);
  const window = Number(windowS);
  const devices = Number(devicesS);
  // Enough packets for ~150k answers/s over warm-up plus run (or argv[11] per second: several
  // generators on one machine, whose pre-computation would otherwise outlast the cookies).
  const rate = process.argv[11] ? Number(process.argv[11]) : 150_000;
  const needed = Math.ceil(rate * (seconds + WARMUP_MS / 1000 + 1)) + Number(process.argv[13] ?? 0);
  const packets: Buffer[] = [];
  const s = createSocket('udp4');
  s.on('error', () => undefined);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  if (mode === 'register') {
    const master = Buffer.from(masterB64!, 'base64');
    const ids = Array.from({ length: devices }, (_, i) => `${idPrefix}-${i.toString(16).padStart(10, '0')}`);
    const keys = ids.map((id) => deriveRegistrationKey(master, id));
    const base = Date.now();
    // The devices' mapping (this socket) must first show it receives: one cookie per device,
    // fetched before the clock starts, as each real device does once per mapping (P6).
    const cookies = await fetchCookies(s, port, ids, keys, base - 1);
    for (let round = 0; packets.length < needed; round++) {
      for (let i = 0; i < devices && packets.length < needed; i++) {
        packets.push(
          encodeRegister(
            { equipmentId: ids[i]!, timestampMs: base + round, nonce: randomBytes(REGISTER_NONCE_BYTES), cookie: cookies[i]! },
            keys[i]!,
          ),
        );
      }
    }
  } else {
    const p = randomBytes(64);
    for (let i = 0; i < needed; i++) packets.push(p);
  }
  // Open loop: OFFERED packets per second from the start of the warm-up, answered or not.
  const offered = process.argv[12] ? Number(process.argv[12]) : 0;
  const warmupAnswers = process.argv[13] ? Number(process.argv[13]) : 0;
  let next = 0;
  let answers = 0;
  let answersAtStart = 0;
  let lastAnswers = 0;
  const send = (): void => {
    if (next >= packets.length) return;
    s.send(packets[next++]!, port, '127.0.0.1');
  };
  s.on('message', () => {
    answers++;
    if (offered === 0) send();
  });
  const paceFrom = performance.now();
  const pace = (): void => {
    const due = Math.floor(((performance.now() - paceFrom) * offered) / 1000);
    while (next < due && next < packets.length) send();
  };
  if (offered === 0) for (let i = 0; i < window; i++) send();
  // Lost datagrams shrink the window: refill it when answers stall for a while (not sooner: a
  // slow target would otherwise be flooded with ever more outstanding requests).
  // Poll instead of sleeping: a generator that sleeps between answers makes every answer the
  // target sends pay for waking it (try_to_wake_up and an IPI in the target's sendmsg), which a
  // slower target pays and the echo baseline (never idle) does not. A busy generator never
  // sleeps, so the target's kernel time is its own work in every mode.
  let polling = true;
  const poll = (): void => {
    if (offered > 0) pace();
    if (polling) setImmediate(poll);
  };
  poll();
  const refill = setInterval(() => {
    if (offered === 0 && answers === lastAnswers) for (let i = 0; i < window; i++) send();
    lastAnswers = answers;
  }, 250);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  // And until WARMUP_ANSWERS have come (e.g. every device twice: with write on change its first
  // registration is still a write to the shared list, and must not count as the steady state).
  const warmupUntil = performance.now() + WARMUP_MAX_MS;
  while (answers < warmupAnswers && performance.now() < warmupUntil) await new Promise((r) => setTimeout(r, 50));
  if (answers < warmupAnswers) process.stderr.write(`udp-load: warm-up ended with ${answers} of ${warmupAnswers} answers\n`);
  answersAtStart = answers;
  const sentAtStart = next;
  const times0 = cpuTimes(targetPid);
  const own0 = process.cpuUsage();
  const extra0 = extraPids === null ? 0 : extraCpuSeconds();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const elapsed = (performance.now() - t0) / 1000;
  const n = answers - answersAtStart;
  const sentInWindow = next - sentAtStart;
  const times1 = cpuTimes(targetPid);
  const cpu = times1.user + times1.system - (times0.user + times0.system);
  const own = process.cpuUsage(own0);
  // Microseconds of CPU per answer: the target's user and kernel time, and the generator's own.
  const perAnswerUs = {
    targetUser: ((times1.user - times0.user) * 1e6) / n,
    targetSystem: ((times1.system - times0.system) * 1e6) / n,
    generator: (own.user + own.system) / n,
  };
  const extraCpu = extraPids === null ? null : extraCpuSeconds() - extra0;
  clearInterval(refill);
  polling = false;
  process.stdout.write(
    `${JSON.stringify({ mode, answersPerSecond: n / elapsed, answersPerCpuSecond: n / cpu, targetCpuShare: cpu / elapsed, perAnswerUs, ...(extraCpu === null ? {} : { answersPerExtraCpuSecond: n / extraCpu }), answers: n, sent: next, offeredPerSecond: offered, sentPerSecond: sentInWindow / elapsed, exhausted: next >= packets.length })}\n`,
  );
  s.close();
}

main().catch((err) => {
  process.stderr.write(`udp-load: ${(err as Error).stack}\n`);
  process.exit(1);
});
