#!/usr/bin/env node
/**
 * The server's memory per kept device connection (issue 15, agent/server/kept-devices.ts):
 * `npm run build && node dist/scripts/bench/kept-memory.js [N] [ROUNDS]`. A real peerlink-server (its own
 * process); this process plays N devices and their clients with the protocol's own code: each
 * device registers over UDP (through the cookie), a client asks for it, the device takes the
 * NOTIFY, attaches over TLS with its proof, refuses the request (no relay offer, no tunnel) and
 * keeps the connection (DEVICE_IDLE). The server's RSS (/proc) after registering the N devices is
 * the baseline; after the N connections are kept, the growth is divided by N; then the same for
 * ROUNDS more rounds of N requests to the same devices (woken over their kept connections: the
 * growth should settle to nothing). argv: [N] [ROUNDS]. Prints JSON.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType, type Frame } from '../../agent/protocol/frames.js';
import {
  ATTACH_EXPORTER_LABEL,
  attachProof,
  deriveRegistrationKey,
  deriveRequestTagKey,
  KEY_BYTES,
  MAC_BYTES,
  NONCE_BYTES,
} from '../../agent/protocol/keys.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import { UDP_TYPE_COOKIE, UDP_TYPE_NOTIFY, UDP_TYPE_REGISTER_ACK } from '../../agent/protocol/constants.js';
import { encodeRegister, parseUdpPacket, REGISTER_NONCE_BYTES } from '../../agent/protocol/udp-packets.js';
import { connectToServer } from '../../agent/rendezvous/server-tls.js';
import { createLoopbackSetup, type LoopbackSetup } from '../lib/loopback-setup.js';
import { startProgram } from '../lib/program.js';
import { serverNodeFlags } from '../lib/server-unit.js';

const BATCH = 25;

async function rssBytes(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Device {
  readonly id: string;
  readonly key: Buffer;
  readonly udp: UdpSocket;
  readonly notifies: Buffer[];
  waiter: (() => void) | null;
  kept: { tls: TLSSocket; channel: FrameChannel } | null;
}

async function device(setup: LoopbackSetup, i: number): Promise<Device> {
  const id = `KEPT-BENCH-${i}`;
  const key = deriveRegistrationKey(setup.masterKey, id);
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  const d: Device = { id, key, udp, notifies: [], waiter: null, kept: null };
  let answered: ((cookie: Buffer | null) => void) | null = null;
  udp.on('message', (msg) => {
    const p = parseUdpPacket(msg).packet;
    if (p.type === UDP_TYPE_COOKIE) answered?.(p.cookie);
    else if (p.type === UDP_TYPE_REGISTER_ACK) answered?.(null);
    else if (p.type === UDP_TYPE_NOTIFY) {
      d.notifies.push(Buffer.from(p.requestId));
      d.waiter?.();
    }
  });
  let cookie: Buffer | undefined;
  for (let round = 0; round < 2; round++) {
    const got = new Promise<Buffer | null>((r) => (answered = r));
    const nonce = randomBytes(REGISTER_NONCE_BYTES);
    udp.send(
      encodeRegister({ equipmentId: id, timestampMs: Date.now(), nonce, ...(cookie ? { cookie } : {}) }, key),
      setup.udpPort,
      '127.0.0.1',
    );
    const c = await Promise.race([got, sleep(3000).then(() => 'timeout' as const)]);
    if (c === 'timeout') throw new Error(`${id}: no answer to the registration`);
    if (c === null) return d;
    cookie = c;
  }
  throw new Error(`${id}: not registered`);
}

async function next(channel: FrameChannel, type: Frame['type']): Promise<Frame> {
  for (;;) {
    const f = await channel.next(5000);
    if (f.type === type) return f;
  }
}

/** One request for `d` from a client; the device attaches (a new connection, or its kept one) and refuses it, keeping the connection. */
async function oneRequest(setup: LoopbackSetup, d: Device): Promise<void> {
  const server = { host: '127.0.0.1', port: setup.tlsPort, serverName: 'localhost', caPem: setup.caPem };
  const tls = await connectToServer(server);
  const client = new FrameChannel(tls);
  await next(client, FrameType.HELLO);
  const sealed = sealRequest(
    { clientNonce: randomBytes(NONCE_BYTES), timestampMs: Date.now(), equipmentId: d.id, service: 'echo', advertisedPort: 9 },
    deriveRequestTagKey(randomBytes(KEY_BYTES)),
  );
  const wake = { nonce: randomBytes(NONCE_BYTES), timestampMs: Date.now(), tag: randomBytes(MAC_BYTES) };
  client.send({ type: FrameType.CONNECT_REQUEST, equipmentId: d.id, advertisedPort: 9, wake, sealedRequest: sealed });
  let requestId: Buffer;
  let conn = d.kept;
  if (conn) {
    const w = await next(conn.channel, FrameType.DEVICE_WAKE);
    requestId = (w as Extract<Frame, { type: typeof FrameType.DEVICE_WAKE }>).requestId;
  } else {
    if (d.notifies.length === 0) await Promise.race([new Promise<void>((r) => (d.waiter = r)), sleep(5000)]);
    d.waiter = null;
    const id = d.notifies.shift();
    if (!id) throw new Error(`${d.id}: no notification`);
    requestId = id;
    const dt = await connectToServer(server);
    conn = { tls: dt, channel: new FrameChannel(dt) };
    await next(conn.channel, FrameType.HELLO);
  }
  d.notifies.length = 0;
  const exporter = conn.tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
  conn.channel.send({ type: FrameType.DEVICE_ATTACH, equipmentId: d.id, requestId, proof: attachProof(d.key, requestId, exporter) });
  await next(conn.channel, FrameType.FORWARD_REQUEST);
  conn.channel.send({ type: FrameType.DEVICE_VERDICT, requestId, status: Status.SERVICE_REFUSED });
  conn.channel.send({ type: FrameType.DEVICE_IDLE, idleMs: 3_600_000 });
  d.kept = conn;
  const result = await next(client, FrameType.CONNECT_RESULT);
  if (result.type === FrameType.CONNECT_RESULT && result.status !== Status.SERVICE_REFUSED)
    throw new Error(`${d.id}: status ${result.status}`);
  client.close();
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 1000);
  const rounds = Number(process.argv[3] ?? 3);
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-bench-kept-'));
  const devices: Device[] = [];
  const server = await (async () => {
    const setup = await createLoopbackSetup({
      dir,
      services: { echo: '127.0.0.1:9' },
      serverExtra: [
        `[requests]\nmax_kept_devices = ${n + 10}\nkept_idle_ms = 3600000`,
        '[limits]\nrequests_per_source_per_min = 0\nrequests_per_device_per_min = 0\nregistrations_per_source_per_s = 0',
      ].join('\n'),
    });
    const program = startProgram('server', ['--config', setup.serverConfig], { nodeArgs: serverNodeFlags() });
    return { setup, program };
  })();
  try {
    const { setup, program } = server;
    for (let i = 0; i < 100; i++) {
      const up = await new Promise<boolean>((r) => {
        const s = netConnect(setup.tlsPort, '127.0.0.1', () => (s.destroy(), r(true)));
        s.once('error', () => r(false));
      });
      if (up) break;
      await sleep(50);
    }
    const pid = program.child.pid!;
    for (let i = 0; i < n; i += BATCH)
      devices.push(...(await Promise.all(Array.from({ length: Math.min(BATCH, n - i) }, (_, j) => device(setup, i + j)))));
    // Warm up the server's code paths with one device's requests, then settle.
    await oneRequest(setup, devices[0]!);
    await oneRequest(setup, devices[0]!);
    await sleep(2000);
    const base = await rssBytes(pid);
    for (let i = 1; i < n; i += BATCH) await Promise.all(devices.slice(i, i + BATCH).map((d) => oneRequest(setup, d)));
    await sleep(2000);
    const kept = await rssBytes(pid);
    const open = devices.filter((d) => d.kept && !d.kept.tls.destroyed).length;
    // Rounds of requests over the kept connections: RSS per request in each (settling, not growing, if nothing leaks).
    const perRequest: number[] = [];
    let again = kept;
    for (let round = 0; round < rounds; round++) {
      for (let i = 1; i < n; i += BATCH) await Promise.all(devices.slice(i, i + BATCH).map((d) => oneRequest(setup, d)));
      await sleep(2000);
      const now = await rssBytes(pid);
      perRequest.push(Math.round((now - again) / (n - 1)));
      again = now;
    }
    const stillOpen = devices.filter((d) => d.kept && !d.kept.tls.destroyed).length;
    process.stdout.write(
      `${JSON.stringify({
        devices: n,
        keptOpen: open,
        keptOpenAfterSecondRound: stillOpen,
        serverRssBaseMiB: +(base / 2 ** 20).toFixed(1),
        serverRssBytesPerKeptConnection: Math.round((kept - base) / (n - 1)),
        serverRssBytesPerRequestOverKeptByRound: perRequest,
      })}\n`,
    );
  } finally {
    for (const d of devices) {
      d.kept?.tls.destroy();
      d.udp.close();
    }
    await server.program.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`kept-memory: ${(err as Error).stack}\n`);
  process.exit(1);
});
