/**
 * Connections a server meets from careless or hostile peers, left in a given state on its TLS
 * port: silent mid-handshake, half-closed mid-handshake, secure but silent, secure and
 * half-closed, a request whose client is gone. Each is destroyed at teardown.
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import type { Scope } from './flow.js';
import { strangerWake } from './wake.js';

/** The first bytes of a TLS ClientHello record, and no more. */
export const PARTIAL_CLIENT_HELLO = Buffer.from('160301002c010000280303', 'hex');

export type StrayKind =
  'silentHandshake' | 'halfClosedHandshake' | 'silentSecure' | 'halfClosedSecure' | 'requestThenGone' | 'requestThenHalfClosed';

export interface StrayTarget {
  readonly port: number;
  readonly caPem: string;
  readonly host?: string;
  /** For the request kinds. */
  readonly equipmentId?: string;
}

function tcp(to: StrayTarget): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: to.host ?? '127.0.0.1', port: to.port, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function secure(to: StrayTarget): Promise<{ socket: TLSSocket; channel: FrameChannel }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { host: to.host ?? '127.0.0.1', port: to.port, servername: 'localhost', ca: to.caPem, allowHalfOpen: true } as never,
      () => {
        const channel = new FrameChannel(socket);
        channel.next(10_000).then(() => resolve({ socket, channel }), reject); // HELLO
      },
    );
    socket.once('error', reject);
  });
}

/** Open one stray connection of `kind`; resolves once it is in that state. */
export async function openStray(t: Scope, to: StrayTarget, kind: StrayKind): Promise<Socket> {
  let s: Socket;
  if (kind === 'silentHandshake' || kind === 'halfClosedHandshake') {
    s = await tcp(to);
    if (kind === 'halfClosedHandshake') s.end(PARTIAL_CLIENT_HELLO);
  } else {
    const c = await secure(to);
    s = c.socket;
    if (kind === 'requestThenGone' || kind === 'requestThenHalfClosed') {
      c.channel.send({
        type: FrameType.CONNECT_REQUEST,
        equipmentId: to.equipmentId ?? 'TV-NONE',
        advertisedPort: 9,
        wake: strangerWake(),
        sealedRequest: randomBytes(64),
      });
    }
    if (kind === 'halfClosedSecure' || kind === 'requestThenHalfClosed') s.end();
    if (kind === 'requestThenGone') await new Promise<void>((r) => s.end(() => (s.destroy(), r())));
  }
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  t.teardown(() => s.destroy());
  return s;
}
