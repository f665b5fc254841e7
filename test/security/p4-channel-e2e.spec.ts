/**
 * P4: the direct channel (device -> client, TLS 1.3 with an external PSK derived from the access
 * key and both nonces) can be neither read nor stood in the middle of. The real peer listener
 * (client side) and the real dialer (device side) are used; a TCP relay records the wire.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, createServer as createTcpServer, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createPeerListener, type PeerListener } from '../../agent/client/peer-listener.js';
import { dialClient } from '../../agent/device/dialer.js';
import { deriveRegistrationKey, deriveTunnelPsk, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { createRegistrationMasterKey } from '../../agent/pki/master-key.js';
import { findSecrets, LOOPBACK, listenTcp, sleep, waitUntil } from './lib/helpers.js';

const EQUIPMENT_ID = 'P4-DEVICE';
const SERVICE = 'http';

interface Peer {
  readonly listener: PeerListener;
  readonly accessKey: Buffer;
  readonly clientNonce: Buffer;
  /** Sockets handed to the client (the expected entry's resolve). */
  readonly resolved: TLSSocket[];
}

async function peer(t: ExecutionContext, accessKey = randomBytes(32)): Promise<Peer> {
  const listener = createPeerListener({ host: LOOPBACK, port: 0 });
  await listener.start();
  t.teardown(() => listener.stop());
  const clientNonce = randomBytes(NONCE_BYTES);
  const resolved: TLSSocket[] = [];
  const unexpect = listener.expect({ clientNonce, accessKey, equipmentId: EQUIPMENT_ID, service: SERVICE, resolve: (s) => resolved.push(s) });
  t.teardown(() => {
    unexpect();
    for (const s of resolved) s.destroy();
  });
  return { listener, accessKey, clientNonce, resolved };
}

interface DialAs {
  readonly accessKey: Buffer;
  readonly clientNonce: Buffer;
  readonly equipmentId?: string;
  readonly service?: string;
  readonly port: number;
}

function dial(d: DialAs): Promise<TLSSocket> {
  return dialClient({
    to: { address: LOOPBACK, port: d.port },
    accessKey: d.accessKey,
    clientNonce: d.clientNonce,
    equipmentId: d.equipmentId ?? EQUIPMENT_ID,
    service: d.service ?? SERVICE,
    timeoutMs: 3000,
  });
}

/** A dial that must fail at the handshake (not by timing out) and must not reach the client. */
async function assertDialRefused(t: ExecutionContext, p: Peer, d: DialAs, what: string): Promise<void> {
  const before = p.resolved.length;
  const err = await t.throwsAsync(dial(d), undefined, `${what}: the handshake must fail`);
  t.not((err as { code?: string } | undefined)?.code, 'PEERLINK_ERR_PEER_TIMEOUT', `${what}: refused, not merely slow`);
  await sleep(50);
  t.is(p.resolved.length, before, `${what}: the client must not be handed a connection`);
}

test('P4a: knowing everything the server knows (master key, registration key, nonces) does not complete the handshake', async (t) => {
  const p = await peer(t);
  const port = p.listener.address().port;
  const master = createRegistrationMasterKey();
  const candidates: [string, Buffer][] = [
    ['a random key', randomBytes(32)],
    ['the master key', master],
    ['the registration key', deriveRegistrationKey(master, EQUIPMENT_ID)],
    ['an all-zero key', Buffer.alloc(32)],
  ];
  // The attacker knows the client nonce: it travels in the sealed request the server relays.
  for (const [what, accessKey] of candidates) await assertDialRefused(t, p, { accessKey, clientNonce: p.clientNonce, port }, what);
  t.is(p.listener.counters.get('accepted'), 0);
  t.true(p.listener.counters.get('handshakeFailed') >= candidates.length, 'each attempt failed the handshake at the listener');

  // The failed attempts did not use up the expectation: the real device still gets through.
  const good = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port });
  t.teardown(() => good.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the genuine connection to reach the client', 2000);
});

test('P4b: with the right access key the handshake succeeds (TLS 1.3, PSK, no certificate) and data flows', async (t) => {
  const p = await peer(t);
  const device = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port: p.listener.address().port });
  t.teardown(() => device.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the connection to reach the client', 2000);
  const client = p.resolved[0]!;
  t.is(device.getProtocol(), 'TLSv1.3');
  t.is(client.getProtocol(), 'TLSv1.3');
  t.falsy(device.getPeerCertificate()?.subject, 'no certificate: the PSK is the authentication');
  const got = new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString())));
  device.write('ping');
  t.is(await got, 'ping');
});

test('P4b: the PSK is bound to the device and the service: a dial for another service or device is refused', async (t) => {
  const p = await peer(t);
  const port = p.listener.address().port;
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: p.clientNonce, service: 'ssh', port }, 'another service');
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: p.clientNonce, equipmentId: 'P4-OTHER', port }, 'another device ID');
});

test('P4c: the bytes on the wire of a real tunnel do not contain the plaintext sent through it', async (t) => {
  const p = await peer(t);
  const listenerPort = p.listener.address().port;
  // A TCP relay between the device's dialer and the client's listener, recording both directions.
  const toClient: Buffer[] = [];
  const toDevice: Buffer[] = [];
  const relayPort = await listenTcp(
    t,
    createTcpServer((inbound: Socket) => {
      const outbound = netConnect({ host: LOOPBACK, port: listenerPort });
      inbound.on('data', (d: Buffer) => {
        toClient.push(Buffer.from(d));
        outbound.write(d);
      });
      outbound.on('data', (d: Buffer) => {
        toDevice.push(Buffer.from(d));
        inbound.write(d);
      });
      const end = (): void => {
        inbound.destroy();
        outbound.destroy();
      };
      inbound.on('error', end).on('close', end);
      outbound.on('error', end).on('close', end);
    }),
  );

  const device = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port: relayPort });
  t.teardown(() => device.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the relayed connection to reach the client', 2000);
  const client = p.resolved[0]!;

  const fromDevice = Buffer.from(`DEVICE-SECRET-${randomBytes(24).toString('hex')}-`.repeat(40));
  const fromClient = Buffer.from(`CLIENT-SECRET-${randomBytes(24).toString('hex')}-`.repeat(40));
  const readAll = (s: TLSSocket, n: number): Promise<Buffer> =>
    new Promise((resolve) => {
      const parts: Buffer[] = [];
      let have = 0;
      const onData = (d: Buffer): void => {
        parts.push(d);
        have += d.length;
        if (have >= n) {
          s.off('data', onData);
          resolve(Buffer.concat(parts));
        }
      };
      s.on('data', onData);
    });
  const atClient = readAll(client, fromDevice.length);
  const atDevice = readAll(device, fromClient.length);
  device.write(fromDevice);
  client.write(fromClient);
  t.true((await atClient).equals(fromDevice), 'the client received the device plaintext through the relay');
  t.true((await atDevice).equals(fromClient), 'the device received the client plaintext through the relay');

  const wireToClient = Buffer.concat(toClient);
  const wireToDevice = Buffer.concat(toDevice);
  t.true(wireToClient.length > fromDevice.length && wireToDevice.length > fromClient.length, 'the traffic did pass the relay');
  const wire = Buffer.concat([wireToClient, wireToDevice]);
  // Not the plaintext, nor any 16-byte piece of it (the hex part is random, so a match would be a leak).
  for (const [label, text] of [['device plaintext', fromDevice], ['client plaintext', fromClient]] as const) {
    const leaks: number[] = [];
    for (let i = 0; i + 16 <= 80; i += 1) if (wire.includes(text.subarray(14 + i, 14 + i + 16))) leaks.push(i);
    t.false(wire.includes(text), `${label} is on the wire`);
    t.deepEqual(leaks, [], `pieces of the ${label} are on the wire`);
  }
  // Nor the keys: the access key, or the session PSK for any device nonce (it is never sent).
  t.deepEqual(findSecrets(wire, { keys: { accessKey: p.accessKey } }), []);
  const identity = /pl1:([0-9a-f]{32}):([0-9a-f]{32})/.exec(wire.toString('latin1'));
  t.truthy(identity, 'the PSK identity (nonces only) is visible on the wire, as designed');
  if (identity) {
    const psk = deriveTunnelPsk(p.accessKey, p.clientNonce, Buffer.from(identity[2]!, 'hex'), EQUIPMENT_ID, SERVICE);
    t.deepEqual(findSecrets(wire, { keys: { tunnelPsk: psk } }), [], 'the session PSK is not on the wire');
  }
});

test('P4d: a PSK identity for a nonce the client does not expect is refused, also with the right key', async (t) => {
  const p = await peer(t);
  const port = p.listener.address().port;
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: randomBytes(NONCE_BYTES), port }, 'unexpected nonce');
  t.true(p.listener.counters.get('unexpected') >= 1, 'counted as unexpected');

  // Single use: once the expected connection has arrived, the same nonce is refused.
  const first = await dial({ accessKey: p.accessKey, clientNonce: p.clientNonce, port });
  t.teardown(() => first.destroy());
  await waitUntil(() => p.resolved.length === 1, 'the expected connection', 2000);
  await assertDialRefused(t, p, { accessKey: p.accessKey, clientNonce: p.clientNonce, port }, 'second use of the nonce');
  t.is(p.listener.counters.get('accepted'), 1);
});
