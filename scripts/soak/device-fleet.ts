/**
 * Many simulated devices speaking the real UDP registration protocol (agent/protocol/udp-packets.ts)
 * from a pool of loopback sockets: each device registers on its interval under its own registration
 * key (derived from the master key as the server derives it, so no identity files are needed),
 * answers a cookie challenge (P6) by registering again with the cookie, and counts what is answered.
 * A "restart" or an "address change" moves a device to another socket of the pool (another source
 * port, and another 127.x address when the pool spans several), so the server sees a new mapping and
 * must challenge it again. In the two-node run each socket talks to one node, so a move can also carry
 * a device from one node to the other.
 *
 * Lost: a registration that got neither an ack nor a cookie within ACK_TIMEOUT_MS (one retry after a
 * cookie counts as the same registration). The simulator drops nothing on purpose.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { UDP_TYPE_COOKIE, UDP_TYPE_REGISTER_ACK } from '../../agent/protocol/constants.js';
import { encodeRegister, deviceUdpKeys, parseUdpPacket, REGISTER_NONCE_BYTES } from '../../agent/protocol/udp-packets.js';
import type { Blake2sKey } from '../../agent/protocol/blake2s.js';

/**
 * An answer later than this is lost. Wide on purpose: on a shared 2-core machine a starved process
 * may answer seconds late, and a late ack still means the server recorded the device (the real
 * registrar retries after 1 s and takes whichever answer comes). Late ones are counted apart.
 */
export const ACK_TIMEOUT_MS = 30_000;
/** An answer later than this is counted as slow. */
export const SLOW_ANSWER_MS = 2_000;
const TICK_MS = 20;
const MAX_CHALLENGES = 3;
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export interface FleetTarget {
  readonly host: string;
  readonly port: number;
}

export interface FleetOptions {
  readonly devices: number;
  readonly intervalMs: number;
  readonly masterKey: Buffer;
  /** Each socket of the pool sends to one of these (round robin over the pool). */
  readonly targets: readonly FleetTarget[];
  /** Source addresses of the pool (127.x); sockets are spread over them. */
  readonly sourceAddresses: readonly string[];
  readonly socketsPerAddress: number;
  /** Share of devices restarted per interval (moved to another socket and registering at once). */
  readonly restartShare: number;
  /** Share of devices whose address changes per interval (moved to a socket on another 127.x address). */
  readonly moveShare: number;
  readonly idPrefix?: string;
}

export interface FleetStats {
  readonly sent: number;
  readonly acked: number;
  readonly cookies: number;
  readonly lost: number;
  /** Of the lost: no answer within ACK_TIMEOUT_MS; challenged MAX_CHALLENGES times. */
  readonly lostNoAnswer: number;
  readonly lostChallenged: number;
  /** Answered, but later than SLOW_ANSWER_MS. */
  readonly slow: number;
  readonly restarts: number;
  readonly moves: number;
  readonly pending: number;
  /** Devices that have been acknowledged at least once. */
  readonly registeredOnce: number;
  /**
   * Datagrams the kernel dropped at the simulator's own sockets (receive buffer full: the harness
   * was starved of CPU), read from /proc/self/net/udp at stop; answers lost there are the harness's.
   */
  readonly harnessDrops: number;
}

interface Device {
  readonly id: string;
  readonly key: Blake2sKey;
  socket: number;
  nextMs: number;
  cookie: Buffer | undefined;
  ackedOnce: boolean;
  /** Registrations of this device awaiting an answer. */
  inFlight: number;
}

interface Pending {
  readonly device: Device;
  readonly sentMs: number;
  /** Cookie challenges this registration has met so far. */
  readonly challenges: number;
}

export interface DeviceFleet {
  start(): Promise<void>;
  /** Stop sending; wait for the answers still due, then close the sockets. */
  stop(): Promise<void>;
  stats(): FleetStats;
  readonly ids: readonly string[];
}

/** Sum of the `drops` column of /proc/self/net/udp for these sockets (0 where it cannot be read). */
function ownSocketDrops(sockets: readonly Socket[]): number {
  let text: string;
  try {
    text = readFileSync('/proc/self/net/udp', 'utf8');
  } catch {
    return 0;
  }
  const hexOf = (address: string, port: number): string => {
    const b = address.split('.').map(Number);
    const bytes = endianness() === 'LE' ? b.reverse() : b;
    return `${bytes.map((x) => x.toString(16).padStart(2, '0')).join('')}:${port.toString(16).padStart(4, '0')}`.toUpperCase();
  };
  const mine = new Set(sockets.map((s) => hexOf(s.address().address, s.address().port)));
  let drops = 0;
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 12 && mine.has(f[1]!)) drops += Number(f[f.length - 1]);
  }
  return drops;
}

export function createDeviceFleet(input: FleetOptions): DeviceFleet {
  const o = Object.freeze({ ...input, idPrefix: input.idPrefix ?? 'SOAK' });
  const keyOf = deviceUdpKeys(o.masterKey);
  const devices: Device[] = [];
  for (let i = 0; i < o.devices; i++) {
    const id = `${o.idPrefix}-${String(i).padStart(6, '0')}`;
    // The deriver reuses one scratch block: copy the prepared key out.
    devices.push({
      id,
      key: Int32Array.from(keyOf(id)) as Blake2sKey,
      socket: 0,
      nextMs: 0,
      cookie: undefined,
      ackedOnce: false,
      inFlight: 0,
    });
  }
  const sockets: Socket[] = [];
  const socketAddress: string[] = [];
  const pending = new Map<string, Pending>();
  let sent = 0,
    acked = 0,
    cookies = 0,
    lost = 0,
    lostNoAnswer = 0,
    lostChallenged = 0,
    slow = 0,
    harnessDrops = 0,
    restarts = 0,
    moves = 0,
    registeredOnce = 0;
  let ticker: NodeJS.Timeout | null = null;

  const rand = (n: number): number => Math.floor(Math.random() * n);

  function send(d: Device, withCookie: boolean, challenges = 0): void {
    const nonce = randomBytes(REGISTER_NONCE_BYTES);
    const packet = encodeRegister(
      { equipmentId: d.id, timestampMs: Date.now(), nonce, ...(withCookie && d.cookie ? { cookie: d.cookie } : {}) },
      d.key,
    );
    const s = d.socket;
    const target = o.targets[s % o.targets.length]!;
    pending.set(nonce.toString('hex'), { device: d, sentMs: Date.now(), challenges });
    if (challenges === 0) sent++;
    d.inFlight++;
    sockets[s]!.send(packet, target.port, target.host);
  }

  function onMessage(msg: Buffer): void {
    let p;
    try {
      p = parseUdpPacket(msg).packet;
    } catch {
      return;
    }
    if (p.type !== UDP_TYPE_REGISTER_ACK && p.type !== UDP_TYPE_COOKIE) return;
    const k = p.nonce.toString('hex');
    const entry = pending.get(k);
    if (!entry) return;
    pending.delete(k);
    const d = entry.device;
    d.inFlight--;
    if (Date.now() - entry.sentMs > SLOW_ANSWER_MS) slow++;
    if (p.type === UDP_TYPE_COOKIE) {
      cookies++;
      d.cookie = Buffer.from(p.cookie);
      // A device that moved while its registration was under way answers with a cookie for its old
      // mapping and is challenged again, as the real registrar would be; a cookie that never takes is a loss.
      if (entry.challenges >= MAX_CHALLENGES) {
        lost++;
        lostChallenged++;
        return;
      }
      send(d, true, entry.challenges + 1);
      return;
    }
    acked++;
    if (!d.ackedOnce) {
      d.ackedOnce = true;
      registeredOnce++;
    }
  }

  function moveDevice(d: Device, otherAddress: boolean): void {
    const perAddr = o.socketsPerAddress;
    const addrIdx = Math.floor(d.socket / perAddr);
    let next: number;
    if (otherAddress && o.sourceAddresses.length > 1) {
      const a = (addrIdx + 1 + rand(o.sourceAddresses.length - 1)) % o.sourceAddresses.length;
      next = a * perAddr + rand(perAddr);
    } else {
      next = addrIdx * perAddr + (((d.socket % perAddr) + 1 + rand(Math.max(1, perAddr - 1))) % perAddr);
    }
    d.socket = next;
    // The cookie was for the old mapping; the device learns that from the server's challenge.
  }

  function tick(): void {
    const now = Date.now();
    // Answers overdue: lost.
    for (const [k, p] of pending) {
      if (now - p.sentMs > ACK_TIMEOUT_MS) {
        pending.delete(k);
        p.device.inFlight--;
        lost++;
        lostNoAnswer++;
      }
    }
    // Random restarts and address changes, spread over the interval.
    const share = TICK_MS / o.intervalMs;
    const nRestart = poisson(o.devices * o.restartShare * share);
    // Only a device with no registration under way: a real device's next registration follows the
    // answer to the last (or its timeout), so two in flight from two mappings would be the harness's
    // own race (the server keeps the newer timestamp and drops the older without an answer).
    for (let i = 0; i < nRestart; i++) {
      const d = devices[rand(devices.length)]!;
      if (d.inFlight > 0) continue;
      moveDevice(d, false);
      d.nextMs = now;
      restarts++;
    }
    const nMove = poisson(o.devices * o.moveShare * share);
    for (let i = 0; i < nMove; i++) {
      const d = devices[rand(devices.length)]!;
      if (d.inFlight > 0) continue;
      moveDevice(d, true);
      moves++;
    }
    // Devices due: a full scan is 10,000 comparisons per tick, cheap next to the crypto.
    for (const d of devices) {
      if (d.nextMs <= now && d.inFlight === 0) {
        d.nextMs = now + o.intervalMs;
        send(d, d.cookie !== undefined);
      }
    }
  }

  return {
    ids: devices.map((d) => d.id),
    async start() {
      for (const address of o.sourceAddresses) {
        for (let i = 0; i < o.socketsPerAddress; i++) {
          const s = createSocket({ type: 'udp4', recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
          s.on('message', onMessage);
          s.on('error', () => undefined);
          await new Promise<void>((resolve, reject) => {
            s.once('error', reject);
            s.bind(0, address, () => {
              s.off('error', reject);
              resolve();
            });
          });
          sockets.push(s);
          socketAddress.push(address);
        }
      }
      // First registrations spread evenly over one interval from now (a fleet does not boot in one instant).
      const t0 = Date.now();
      devices.forEach((d, i) => {
        d.socket = rand(sockets.length);
        d.nextMs = t0 + Math.floor((i / devices.length) * o.intervalMs);
      });
      ticker = setInterval(tick, TICK_MS);
    },
    async stop() {
      if (ticker) clearInterval(ticker);
      ticker = null;
      const end = Date.now() + ACK_TIMEOUT_MS;
      while (pending.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      lost += pending.size;
      lostNoAnswer += pending.size;
      harnessDrops = ownSocketDrops(sockets);
      pending.clear();
      await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
    stats: () =>
      Object.freeze({
        sent,
        acked,
        cookies,
        lost,
        lostNoAnswer,
        lostChallenged,
        slow,
        restarts,
        moves,
        pending: pending.size,
        registeredOnce,
        harnessDrops,
      }),
  };

  function poisson(mean: number): number {
    // Small means: Knuth's method; a tick's share is far below 100.
    const l = Math.exp(-mean);
    let k = 0;
    let p = 1;
    do {
      k++;
      p *= Math.random();
    } while (p > l);
    return k - 1;
  }
}
