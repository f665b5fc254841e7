#!/usr/bin/env node
/**
 * CPU per stream of the two session framings, nothing else (issue 15):
 * `npm run build && node dist/scripts/bench/stream-framing.js [ROUNDS]`. Both ends in this process
 * over one loopback TCP connection (no TLS: the framing's own cost); per round 40 parallel streams,
 * each 100 bytes one way (then the end) and 16 KiB back, as the web page's requests. Node's `http2`
 * (CONNECT streams, as `peerlink-session`) and our mux (`peerlink-mux`, a Duplex at the client as
 * `client.open()` gives, the device's side answering from its sink), alternating rounds. Prints JSON.
 */
import { once } from 'node:events';
import { connect as h2connect, performServerHandshake } from 'node:http2';
import { connect, createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { silentLogger } from '../../agent/common/logger.js';
import { startMuxClientSession } from '../../agent/session/mux-client-session.js';
import { startMuxSession, type MuxSession } from '../../agent/session/mux-session.js';

const STREAMS = 40;
const BODY = Buffer.alloc(16 * 1024, 0x62);
const REQUEST = Buffer.alloc(100, 0x61);

async function socketPair(): Promise<{ client: Socket; device: Socket; close: () => void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  const [[device]] = (await Promise.all([once(server, 'connection'), once(client, 'connect')])) as [[Socket], unknown];
  client.setNoDelay(true);
  device.setNoDelay(true);
  return { client, device, close: () => (client.destroy(), device.destroy(), server.close()) };
}

function received(d: Duplex): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    d.on('data', (b: Buffer) => (n += b.length));
    d.once('end', () => resolve(n));
    d.once('error', reject);
  });
}

type OneStream = () => Promise<number>;

async function http2Streams(): Promise<{ one: OneStream; close: () => void }> {
  const p = await socketPair();
  const server = performServerHandshake(p.device);
  server.on('stream', (st) => {
    st.respond({ ':status': 200 });
    st.resume();
    st.once('end', () => st.end(BODY));
  });
  const session = h2connect('http://peerlink.invalid', { createConnection: () => p.client as never });
  return {
    one: () => {
      const req = session.request({ ':method': 'CONNECT', ':authority': 'web' }, { endStream: false });
      req.end(REQUEST);
      return received(req);
    },
    close: () => (session.destroy(), server.destroy(), p.close()),
  };
}

async function muxStreams(): Promise<{ one: OneStream; close: () => void }> {
  const p = await socketPair();
  const logger = silentLogger();
  const device: MuxSession = startMuxSession({
    channel: p.device,
    role: 'device',
    logger,
    maxStreams: 128,
    onOpen: (st) =>
      device.accept(st, {
        data: (b) => device.consumed(st, b.length),
        end: () => (device.send(st, BODY), device.finish(st)),
        reset: () => undefined,
        writable: () => undefined,
      }),
  });
  const client = startMuxClientSession({ channel: p.client, openTimeoutMs: 10_000, logger });
  return {
    one: async () => {
      const d = await client.open('web', undefined, true);
      d.end(REQUEST);
      return received(d);
    },
    close: () => (void client.close('destroy'), p.close()),
  };
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 100);
  const kinds = { http2: await http2Streams(), mux: await muxStreams() };
  const cpuUs = { http2: 0, mux: 0 };
  const page = async (one: OneStream): Promise<void> => {
    const got = await Promise.all(Array.from({ length: STREAMS }, one));
    if (got.some((n) => n !== BODY.length)) throw new Error('a stream came back short');
  };
  for (const k of Object.values(kinds)) for (let i = 0; i < 10; i++) await page(k.one); // warm
  for (let i = 0; i < rounds; i++) {
    for (const name of ['http2', 'mux'] as const) {
      const c0 = process.cpuUsage();
      await page(kinds[name].one);
      const c = process.cpuUsage(c0);
      cpuUs[name] += c.user + c.system;
    }
  }
  for (const k of Object.values(kinds)) k.close();
  const perStream = (us: number): number => Number((us / 1000 / (rounds * STREAMS)).toFixed(3));
  const out = { rounds, streams: STREAMS, cpuMsPerStream: { http2: perStream(cpuUs.http2), mux: perStream(cpuUs.mux) } };
  process.stdout.write(`${JSON.stringify({ ...out, ratio: Number((out.cpuMsPerStream.mux / out.cpuMsPerStream.http2).toFixed(2)) })}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`stream-framing: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
