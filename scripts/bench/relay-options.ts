#!/usr/bin/env node
/**
 * Relay options compared (npm run bench -- relay-options): the relayed tunnel's whole pipeline in
 * ONE process, so that the figure is the CPU work per byte (on a shared machine wall-clock rates
 * between processes measure the neighbours), variants interleaved round by round, best of N:
 *
 *   plain TLS       client TLS -> TLS echo (the baseline)
 *   relay, before   inner TLS over the carrier view (agent/common/carrier.ts), outer TLS legs (AES-256 first)
 *   eager carrier   a carrier view that passes writes on at once (measured, not kept: no gain)
 *   AES-128 legs    the server's legs negotiate TLS_AES_128_GCM_SHA256 (agent/server/tls-ciphers.ts)
 *   plain TCP legs  no outer TLS at all, the inner channel the only encryption, through the carrier view
 *   ... native      and the inner TLS on the TCP socket itself: the plain legs built (agent/server/relay-leg.ts)
 *
 * The inner channel here is certificate TLS 1.3 with AES-128-GCM (the real one is PSK with the
 * same cipher: the record layer, which is what is measured, is the same).
 */
import { once } from 'node:events';
import { createServer as netServer, connect as netConnect, type Server as NetServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as tlsServer, TLSSocket, type Server as TlsServer } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { carrierStream } from '../../agent/common/carrier.js';
import { SERVER_TLS_CIPHERS } from '../../agent/server/tls-ciphers.js';
import { TUNNEL_CIPHER } from '../../agent/protocol/constants.js';

/** A variant of the carrier view (agent/common/carrier.ts) that passes each write on at once instead of waiting for the carrier's callback. */
function carrierEager(carrier: Duplex): Duplex {
  const view = new Duplex({
    allowHalfOpen: true,
    write(chunk: Buffer, _e, cb) {
      if (carrier.write(chunk)) cb();
      else carrier.once('drain', () => cb());
    },
    final(cb) {
      carrier.end();
      cb();
    },
    read() {
      carrier.resume();
    },
  });
  carrier.on('data', (d: Buffer) => {
    if (!view.push(d)) carrier.pause();
  });
  carrier.once('end', () => view.push(null));
  return view;
}

type Variant = 'plainTls' | 'relayBefore' | 'carrierFix' | 'aes128Legs' | 'plainTcpLegs' | 'plainTcpNative';
const ca = createCa();
const cert = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', '127.0.0.1'] });
const innerOpts = { cert: cert.certPem, key: cert.keyPem, ciphers: TUNNEL_CIPHER, minVersion: 'TLSv1.3' as const };

async function listen(s: NetServer | TlsServer): Promise<number> {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return (s.address() as { port: number }).port;
}

/** A relay that pairs connections two by two and copies between them (as relay.ts does, unthrottled). */
function relayServer(tls: boolean, ciphers?: string): NetServer | TlsServer {
  let waiting: Socket | null = null;
  const onConn = (s: Socket): void => {
    s.on('error', () => undefined);
    if (!waiting) {
      waiting = s;
      s.pause();
      return;
    }
    const a = waiting;
    waiting = null;
    a.pipe(s);
    s.pipe(a);
    a.resume();
  };
  return tls
    ? tlsServer(
        { cert: cert.certPem, key: cert.keyPem, allowHalfOpen: true, ...(ciphers ? { ciphers, honorCipherOrder: true } : {}) },
        onConn,
      )
    : netServer({ allowHalfOpen: true }, onConn);
}

async function leg(port: number, tls: boolean): Promise<Socket> {
  const s = tls
    ? tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost', allowHalfOpen: true } as never)
    : netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(s, tls ? 'secureConnect' : 'connect');
  return s;
}

async function roundTripMs(v: Variant, data: Buffer, ports: Record<string, number>): Promise<number> {
  let clientSide: TLSSocket;
  if (v === 'plainTls') {
    clientSide = tlsConnect({ host: '127.0.0.1', port: ports.tlsEcho!, ca: ca.certPem, servername: 'localhost' });
    await once(clientSide, 'secureConnect');
  } else {
    const tls = v !== 'plainTcpLegs' && v !== 'plainTcpNative';
    const port = v === 'aes128Legs' ? ports.relay128! : tls ? ports.relay256! : ports.relayTcp!;
    const wrap = v === 'carrierFix' ? carrierEager : v === 'plainTcpNative' ? (x: Duplex) => x : carrierStream;
    const clientLeg = await leg(port, tls);
    const deviceLeg = await leg(port, tls);
    // The device is the inner TLS client and echoes; the client is the inner TLS server (as in peerlink).
    const device = tlsConnect({ socket: wrap(deviceLeg) as Socket, ca: ca.certPem, servername: 'localhost', ciphers: TUNNEL_CIPHER });
    device.on('error', () => undefined);
    device.pipe(device);
    clientSide = new TLSSocket(wrap(clientLeg) as Socket, { isServer: true, ...innerOpts });
    await once(clientSide, 'secure');
  }
  const t0 = performance.now();
  let got = 0;
  const done = new Promise<void>((resolve) =>
    clientSide.on('data', (d: Buffer) => ((got += d.length) >= data.length ? resolve() : undefined)),
  );
  clientSide.write(data);
  await done;
  const ms = performance.now() - t0;
  clientSide.destroy();
  return ms;
}

export async function relayOptions(o: { mib: number; rounds: number }): Promise<Record<Variant, number>> {
  const echo = tlsServer({ cert: cert.certPem, key: cert.keyPem, ciphers: SERVER_TLS_CIPHERS, honorCipherOrder: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const servers = {
    tlsEcho: echo,
    relay256: relayServer(true),
    relay128: relayServer(true, SERVER_TLS_CIPHERS),
    relayTcp: relayServer(false),
  };
  const ports: Record<string, number> = {};
  for (const [k, s] of Object.entries(servers)) ports[k] = await listen(s);
  const data = randomBytes(o.mib * 1024 * 1024);
  const variants: Variant[] = ['plainTls', 'relayBefore', 'carrierFix', 'aes128Legs', 'plainTcpLegs', 'plainTcpNative'];
  const best = Object.fromEntries(variants.map((v) => [v, Infinity])) as Record<Variant, number>;
  try {
    for (let r = 0; r < o.rounds; r++) {
      for (const v of variants) best[v] = Math.min(best[v], await roundTripMs(v, data, ports));
    }
  } finally {
    for (const s of Object.values(servers)) s.close();
  }
  const mbps = Object.fromEntries(variants.map((v) => [v, (2 * data.length * 8) / (best[v] / 1000) / 1e6])) as Record<Variant, number>;
  return mbps;
}

export async function relayOptionsBench(argv: readonly string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const r = await relayOptions({ mib: quick ? 8 : 32, rounds: quick ? 3 : 7 });
  const label: Record<Variant, string> = {
    plainTls: 'plain TLS to an echo (baseline)',
    relayBefore: 'relayed, before (legs AES-256-GCM)',
    carrierFix: 'relayed, eager carrier view (not kept)',
    aes128Legs: 'relayed, TLS legs AES-128-GCM (the fallback: a server without plain legs)',
    plainTcpLegs: 'relayed, plain TCP legs, inner channel through the carrier view (not kept)',
    plainTcpNative: 'relayed, plain legs, inner TLS on the socket itself (what is built, issue 15)',
  };
  process.stdout.write(
    `\nrelay options, whole pipeline in one process (CPU work per byte), ${quick ? 8 : 32} MiB each way, best of ${quick ? 3 : 7} interleaved\n\n`,
  );
  process.stdout.write('| variant | Mbit/s (both directions) | ratio to plain TLS |\n|---|---|---|\n');
  for (const v of Object.keys(r) as Variant[])
    process.stdout.write(`| ${label[v]} | ${r[v].toFixed(0)} | ${(r[v] / r.plainTls).toFixed(2)} |\n`);
}
