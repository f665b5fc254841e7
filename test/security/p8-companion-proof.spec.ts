/**
 * P8 for companions (issue 14, agent/server/companions.ts): the server passes a device's endpoint of
 * the other family on only from a connection that proves it is the device for that request (the
 * attach proof, bound to that TLS session). A DEVICE_COMPANION with a proof made for another
 * session, or with none, is counted as a rejected attach and closed; a client's companion is
 * taken (its address is what the server observed) and closed as well.
 */
import test from 'ava';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType } from '../../agent/protocol/frames.js';
import { createServerPki, LOOPBACK, startServer } from '../helpers/harness.js';

async function companion(port: number, caPem: string, frame: (tls: TLSSocket) => Parameters<FrameChannel['send']>[0]): Promise<void> {
  const tls = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ host: LOOPBACK, port, servername: 'localhost', ca: caPem }, () => resolve(s));
    s.once('error', reject);
  });
  const closed = new Promise<void>((resolve) => tls.once('close', () => resolve()));
  const channel = new FrameChannel(tls);
  await channel.next(5_000); // HELLO
  channel.send(frame(tls));
  await closed; // the server closes every companion once it has read its one frame
}

test('P8: a DEVICE_COMPANION without the proof for its own TLS session is rejected; a CLIENT_COMPANION is taken and closed', async (t) => {
  const pki = createServerPki();
  const server = await startServer(t, pki);
  const port = server.tlsAddress().port;
  const before = server.broker.counters.get('attachRejected');
  const requestId = Buffer.alloc(16, 5);
  // A proof made for a different TLS session (as a stranger replaying one it saw would have).
  await companion(port, pki.caPem, () => ({
    type: FrameType.DEVICE_COMPANION,
    equipmentId: 'TV-1',
    requestId,
    proof: Buffer.alloc(32, 1),
  }));
  t.is(server.broker.counters.get('attachRejected'), before + 1);
  await companion(port, pki.caPem, () => ({ type: FrameType.CLIENT_COMPANION, clientNonce: Buffer.alloc(16, 2) }));
  t.is(server.broker.counters.get('attachRejected'), before + 1, 'a client companion is no rejected attach');
  t.is(server.broker.counters.get('badFirstFrame'), 0);
});
