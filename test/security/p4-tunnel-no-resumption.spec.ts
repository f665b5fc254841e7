/**
 * P4: every end-to-end channel is its own PSK handshake, bound to its own nonces. The client's end
 * shares one TLS context across tunnels (agent/protocol/tunnel-tls.ts); a session ticket from one
 * tunnel must not open another. A device-side TLS client completes one tunnel, keeps the session the
 * client's end gave it, then offers that session on a second tunnel with a wrong PSK: the second
 * handshake must fail (it would succeed by resumption if the shared context honoured tickets).
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { acceptTunnel } from '../../agent/client/tunnel-server.js';
import { pskIdentity } from '../../agent/device/dialer.js';
import { deriveTunnelPsk, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { TUNNEL_CIPHER } from '../../agent/protocol/constants.js';

const EQUIPMENT_ID = 'P4-RESUME';
const SERVICE = 'echo';

interface Listener {
  readonly server: Server;
  readonly port: number;
  readonly accepted: Promise<TLSSocket>[];
}

async function listen(expected: Parameters<typeof acceptTunnel>[1]): Promise<Listener> {
  const accepted: Promise<TLSSocket>[] = [];
  const server = createServer((raw: Socket) => {
    const p = acceptTunnel(raw, expected, 5000, AbortSignal.timeout(10_000), 'in the spec');
    p.catch(() => undefined);
    accepted.push(p);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port, accepted };
}

function dial(port: number, psk: Buffer, identity: string, session?: Buffer): Promise<{ sock: TLSSocket; session: Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    let gotSession: (b: Buffer) => void = () => undefined;
    const session$ = new Promise<Buffer>((r) => (gotSession = r));
    const sock = tlsConnect({
      host: '127.0.0.1',
      port,
      pskCallback: () => ({ psk, identity }),
      ciphers: TUNNEL_CIPHER,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      checkServerIdentity: () => new Error('PSK only'),
      ...(session ? { session } : {}),
    });
    sock.on('session', (s: Buffer) => gotSession(s));
    sock.once('secureConnect', () => resolve({ sock, session: session$ }));
    sock.once('error', reject);
    sock.once('close', () => reject(new Error('closed before the handshake')));
  });
}

test('a second tunnel cannot resume the first one’s TLS session', async (t) => {
  const accessKey = randomBytes(32);
  const clientNonce = randomBytes(NONCE_BYTES);
  const l = await listen({ accessKey, clientNonce, equipmentId: EQUIPMENT_ID, service: SERVICE });
  t.teardown(() => void l.server.close());

  const deviceNonce = randomBytes(NONCE_BYTES);
  const identity = pskIdentity(clientNonce, deviceNonce);
  const first = await dial(l.port, deriveTunnelPsk(accessKey, clientNonce, deviceNonce, EQUIPMENT_ID, SERVICE), identity);
  // The client's end sends its post-handshake messages once it has data to send or read.
  const inner = await l.accepted[0]!;
  // The shared context keeps the channel's terms: TLS 1.3, TUNNEL_CIPHER, and no certificate.
  t.is(inner.getProtocol(), 'TLSv1.3');
  t.is(inner.getCipher().standardName, TUNNEL_CIPHER);
  t.is(first.sock.getCipher().standardName, TUNNEL_CIPHER);
  inner.write('x');
  const session = await first.session;
  t.true(session.length > 0, 'the first tunnel handed out a session to offer');
  first.sock.destroy();
  inner.destroy();

  // Same identity, wrong key: only a resumed session could complete this handshake.
  const wrong = randomBytes(32);
  await t.throwsAsync(dial(l.port, wrong, identity, session));
  await t.throwsAsync(l.accepted[1]!);
});
