import test from 'ava';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:tls';
import { createCa } from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { connectToServer, forgetServerSessions } from '../../agent/rendezvous/server-tls.js';
import { deriveTicketKeys, rotateTicketKeys, ticketEpoch, ticketSecretFromKey } from '../../agent/server/ticket-keys.js';
import { ErrorCodes } from '../../agent/common/errors.js';

const ca = createCa();
const cert = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', '127.0.0.1'] });
const other = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', '127.0.0.1'] });

/** A TLS server on a port; `swap` moves it to another certificate (another node, same port). */
async function node(c: { certPem: string; keyPem: string }, port = 0): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer({ cert: c.certPem, key: c.keyPem, sessionTimeout: 3600 }, (s) => s.end('hi'));
  const rotation = rotateTicketKeys(server, ticketSecretFromKey(c.keyPem));
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      rotation.stop();
      await new Promise((r) => server.close(r));
    },
  };
}

async function connectOnce(port: number, caPem = ca.certPem): Promise<boolean> {
  const s = await connectToServer({ host: '127.0.0.1', port, serverName: 'localhost', caPem });
  const reused = s.isSessionReused();
  // The ticket arrives after the handshake: read to the end so that it has been remembered.
  s.resume();
  await once(s, 'end');
  s.destroy();
  return reused;
}

test.serial('a second connection resumes; a node sharing the key opens the ticket, one with another key does not', async (t) => {
  forgetServerSessions();
  const a = await node(cert);
  try {
    t.false(await connectOnce(a.port));
    t.true(await connectOnce(a.port));
    t.true(await connectOnce(a.port));
  } finally {
    await a.close();
  }
  // Another node (here: a restart on the same port) with the same certificate and key.
  const b = await node(cert, a.port);
  try {
    t.true(await connectOnce(b.port), 'a ticket from one node opens a session at another that shares the key');
  } finally {
    await b.close();
  }
  const c = await node(other, a.port);
  try {
    t.false(await connectOnce(c.port), 'another key: a full handshake (still verified), no error');
    t.true(await connectOnce(c.port));
  } finally {
    await c.close();
  }
});

test.serial('a remembered ticket does not skip verification against another CA', async (t) => {
  forgetServerSessions();
  const a = await node(cert);
  try {
    t.false(await connectOnce(a.port));
    t.true(await connectOnce(a.port));
    const otherCa = createCa();
    const err = await t.throwsAsync(connectOnce(a.port, otherCa.certPem));
    t.is((err as { code?: string }).code, ErrorCodes.UNTRUSTED_CERTIFICATE);
  } finally {
    await a.close();
  }
});

test('ticket keys: 48 bytes, the same for the same key and epoch, new each epoch and for each key', (t) => {
  const s = ticketSecretFromKey(cert.keyPem);
  const e = ticketEpoch(Date.now());
  t.is(deriveTicketKeys(s, e).length, 48);
  t.deepEqual(deriveTicketKeys(s, e), deriveTicketKeys(ticketSecretFromKey(cert.keyPem), e));
  t.notDeepEqual(deriveTicketKeys(s, e), deriveTicketKeys(s, e + 1));
  t.notDeepEqual(deriveTicketKeys(s, e), deriveTicketKeys(ticketSecretFromKey(other.keyPem), e));
});

test('rotation: the server holds the current epoch keys, and the next epoch keys once it begins', async (t) => {
  let now = 10 * 3_600_000;
  const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => s.end('hi'));
  const rotation = rotateTicketKeys(server, ticketSecretFromKey(cert.keyPem), { now: () => now });
  t.deepEqual(server.getTicketKeys(), deriveTicketKeys(ticketSecretFromKey(cert.keyPem), 10));
  rotation.stop();
  now += 3_600_000;
  const r2 = rotateTicketKeys(server, ticketSecretFromKey(cert.keyPem), { now: () => now });
  t.deepEqual(server.getTicketKeys(), deriveTicketKeys(ticketSecretFromKey(cert.keyPem), 11));
  r2.stop();
});
