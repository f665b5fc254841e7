/**
 * A mux session over a real loopback TCP connection, without the rendezvous: the device's end
 * (serveMuxDeviceSession with real local services) on the accepted socket, and on the other end
 * either the client's session (startMuxClientSession) or the raw socket, for specs that write
 * frames by hand. The device's log lines are kept (JSON objects).
 */
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { TUNNEL_CHOSEN_BYTE } from '../../agent/protocol/constants.js';
import { connectService } from '../../agent/device/dialer.js';
import type { HostPort } from '../../agent/common/endpoint-parse.js';
import type { DeviceSessionOutcome } from '../../agent/session/device-session.js';
import { serveMuxDeviceSession } from '../../agent/session/mux-device-session.js';
import type { SessionStreamCounter } from '../../agent/session/session-counts.js';
import { startMuxClientSession, type MuxClientSession } from '../../agent/session/mux-client-session.js';
import { silentLogger } from '../../agent/common/logger.js';
import type { Scope } from './flow.js';

export interface MuxPair {
  /** The client's end of the channel, after the chosen byte. */
  readonly channel: Socket;
  /** Resolves when the device's session has ended. */
  readonly outcome: Promise<DeviceSessionOutcome>;
  readonly deviceLines: Record<string, unknown>[];
  /** The allow-list the device reads for each stream (change it to "reload"). */
  readonly services: Map<string, HostPort>;
  /** What the device's session counted (session-counts.ts), by counter. */
  readonly counts: Partial<Record<SessionStreamCounter, number>>;
}

export async function muxPair(
  t: Scope,
  services: Record<string, number>,
  /** connectDelayMs: the device's connect to a service takes this long more (a slow service). */
  opts: { maxStreams?: number; idleMs?: number; connectDelayMs?: number } = {},
): Promise<MuxPair> {
  const deviceLines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) deviceLines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    }),
  );
  const allow = new Map<string, HostPort>(Object.entries(services).map(([k, port]) => [k, { host: '127.0.0.1', port }]));
  const aborter = new AbortController();
  const counts: Partial<Record<SessionStreamCounter, number>> = {};
  let resolveOutcome!: (o: Promise<DeviceSessionOutcome>) => void;
  const outcome = new Promise<DeviceSessionOutcome>((r) => (resolveOutcome = r));
  const server = createServer((sock) => {
    resolveOutcome(
      serveMuxDeviceSession({
        channel: sock,
        services: () => allow,
        connectService: opts.connectDelayMs
          ? (target: HostPort, timeoutMs: number) =>
              new Promise<void>((r) => setTimeout(r, opts.connectDelayMs)).then(() => connectService(target, timeoutMs))
          : connectService,
        connectTimeoutMs: 2000,
        logger,
        signal: aborter.signal,
        count: (what) => void (counts[what] = (counts[what] ?? 0) + 1),
        ...(opts.maxStreams ? { maxStreams: opts.maxStreams } : {}),
        ...(opts.idleMs ? { idleMs: opts.idleMs } : {}),
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const channel = connect((server.address() as { port: number }).port, '127.0.0.1');
  t.teardown(() => {
    aborter.abort();
    channel.destroy();
    server.close();
  });
  const [first] = (await once(channel, 'data')) as [Buffer];
  if (first[0] !== TUNNEL_CHOSEN_BYTE) throw new Error('no chosen byte');
  if (first.length > 1) channel.unshift(first.subarray(1));
  channel.pause();
  return { channel, outcome, deviceLines, services: allow, counts };
}

export function muxClient(t: Scope, pair: MuxPair, openTimeoutMs = 5000): MuxClientSession {
  pair.channel.resume();
  const s = startMuxClientSession({ channel: pair.channel, openTimeoutMs, logger: silentLogger() });
  t.teardown(() => s.close('destroy'));
  return s;
}
