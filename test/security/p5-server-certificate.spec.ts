/**
 * P5: the client and the agent talk only to the real rendezvous server: its certificate must
 * chain to the pinned peerlink CA and name the host they asked for. A rogue TLS server (another
 * CA, a self-signed certificate, or the right CA but another name) is refused with
 * PEERLINK_ERR_UNTRUSTED_CERTIFICATE and never receives a single application byte.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { connect } from '../../agent/client/client.js';
import { createAgent } from '../../agent/device/agent.js';
import { checkAgentSettings } from '../../agent/device/settings.js';
import { connectToServer } from '../../agent/rendezvous/server-tls.js';
import { ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';
import forge from 'node-forge';
import {
  certificateToPem,
  commonNameAttributes,
  createCa,
  generateRsaKeyPair,
  randomSerialNumberHex,
  validityWindow,
} from '../../agent/pki/ca.js';
import { issueServerCert } from '../../agent/pki/server-cert.js';
import { encodeFrame, FrameType } from '../../agent/protocol/frames.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { createServerPki, listenTcp, LOOPBACK, startServer, waitUntil, type ServerPki } from '../helpers/harness.js';
import { deriveWakeKey, makeWake } from '../../agent/protocol/wake.js';

const EQUIPMENT_ID = 'P5-DEVICE';

/** The genuine PKI (its CA is what devices and clients pin) and the rogue certificates. */
const real: ServerPki = createServerPki();
const otherCa = createCa({ commonName: 'peerlink rendezvous CA' }); // same name, different key

/** A self-signed server certificate for localhost/127.0.0.1 (a leaf: serverAuth, not a CA). */
function selfSignedServerCert(): { certPem: string; keyPem: string } {
  const keys = generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerialNumberHex();
  cert.validity = validityWindow(30);
  cert.setSubject(commonNameAttributes('localhost'));
  cert.setIssuer(commonNameAttributes('localhost'));
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        { type: 2, value: 'localhost' },
        { type: 7, ip: LOOPBACK },
      ],
    },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: certificateToPem(cert), keyPem: keys.keyPem };
}

const rogue = {
  otherCa: issueServerCert({ caCertPem: otherCa.certPem, caKeyPem: otherCa.keyPem, hosts: ['localhost', LOOPBACK] }),
  wrongName: issueServerCert({ caCertPem: real.caPem, caKeyPem: real.caKeyPem, hosts: ['evil.example', '10.9.8.7'] }),
  selfSigned: selfSignedServerCert(),
};
type RogueKind = keyof typeof rogue;

/** connectToServer that must fail; if it wrongly succeeds, the socket is closed so nothing hangs. */
function dialServer(o: { port: number; serverName?: string; caPem?: string }): Promise<TLSSocket> {
  return connectToServer({
    host: LOOPBACK,
    port: o.port,
    serverName: o.serverName ?? 'localhost',
    caPem: o.caPem ?? real.caPem,
    timeoutMs: 3000,
  }).then((sock) => {
    sock.destroy();
    return sock;
  });
}
const KINDS: [RogueKind, string][] = [
  ['otherCa', 'a certificate for the right names from another CA'],
  ['wrongName', 'a certificate from the right CA for another name'],
  ['selfSigned', 'a self-signed certificate'],
];

interface RogueServer {
  readonly port: number;
  /** Connections that completed the TLS handshake, and application bytes received on them. */
  readonly secured: () => number;
  readonly bytes: () => number;
}

/** A TLS server with the given certificate that speaks the protocol's first words (HELLO). */
async function rogueServer(t: ExecutionContext, cert: { certPem: string; keyPem: string }): Promise<RogueServer> {
  let secured = 0;
  let bytes = 0;
  const s = createTlsServer({ cert: cert.certPem, key: cert.keyPem }, (sock) => {
    secured++;
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => (bytes += d.length));
    sock.write(encodeFrame({ type: FrameType.HELLO, serverTimeMs: Date.now() }));
  });
  s.on('tlsClientError', () => undefined);
  const port = await listenTcp(t, s);
  return { port, secured: () => secured, bytes: () => bytes };
}

for (const [kind, what] of KINDS) {
  test(`P5 client: connect() refuses ${what} (UNTRUSTED_CERTIFICATE) and sends it nothing`, async (t) => {
    const srv = await rogueServer(t, rogue[kind]);
    const err = await t.throwsAsync(
      connect({
        server: { host: LOOPBACK, port: srv.port },
        serverName: 'localhost',
        caPem: real.caPem,
        equipmentId: EQUIPMENT_ID,
        accessKey: randomBytes(32),
        service: 'http',
        accept: { host: LOOPBACK, port: 0 },
        resultTimeoutMs: 3000,
      }),
    );
    t.true(isPeerlinkError(err, ErrorCodes.UNTRUSTED_CERTIFICATE), `got ${(err as { code?: string } | undefined)?.code}`);
    t.is(srv.bytes(), 0, 'the rogue server received no application bytes (no CONNECT_REQUEST)');
  });

  test(`P5 agent: connectToServer (with the device's CA) refuses ${what} (UNTRUSTED_CERTIFICATE)`, async (t) => {
    const srv = await rogueServer(t, rogue[kind]);
    const err = await t.throwsAsync(dialServer({ port: srv.port }));
    t.true(isPeerlinkError(err, ErrorCodes.UNTRUSTED_CERTIFICATE), `got ${(err as { code?: string } | undefined)?.code}`);
    t.is(srv.bytes(), 0);
  });
}

test('P5 client: the server name is checked, not only the CA (default name = the dialled host)', async (t) => {
  // A certificate from the right CA naming only "localhost": dialling 127.0.0.1 without a
  // serverName must be refused, and asking for "localhost" accepted (control).
  const onlyLocalhost = issueServerCert({ caCertPem: real.caPem, caKeyPem: real.caKeyPem, hosts: ['localhost'] });
  const srv = await rogueServer(t, onlyLocalhost);
  const err = await t.throwsAsync(dialServer({ port: srv.port, serverName: LOOPBACK }));
  t.true(isPeerlinkError(err, ErrorCodes.UNTRUSTED_CERTIFICATE), `got ${(err as { code?: string } | undefined)?.code}`);
  const ok = await connectToServer({ host: LOOPBACK, port: srv.port, serverName: 'localhost', caPem: real.caPem, timeoutMs: 3000 });
  ok.destroy();
  t.pass();
});

test('P5 controls: the genuine server certificate is accepted by connectToServer and by the client', async (t) => {
  const srv = await rogueServer(t, real);
  const sock = await connectToServer({ host: LOOPBACK, port: srv.port, serverName: 'localhost', caPem: real.caPem, timeoutMs: 3000 });
  t.true(sock.authorized);
  sock.destroy();
  // The client gets past the certificate (it then waits for a CONNECT_RESULT the stub never sends).
  const err = await t.throwsAsync(
    connect({
      server: { host: LOOPBACK, port: srv.port },
      serverName: 'localhost',
      caPem: real.caPem,
      equipmentId: EQUIPMENT_ID,
      accessKey: randomBytes(32),
      service: 'http',
      accept: { host: LOOPBACK, port: 0 },
      resultTimeoutMs: 500,
    }),
  );
  t.is((err as { code?: string } | undefined)?.code, ErrorCodes.PEER_TIMEOUT);
  t.true(srv.bytes() > 0, 'the genuine server did receive the request');
});

test('P5 agent end to end: notified by the real UDP side, the agent refuses a rogue TLS server and sends it nothing', async (t) => {
  // The genuine server's UDP side (registration and notification), but the TLS port the agent
  // is configured with belongs to a rogue server with another CA's certificate.
  const server = await startServer(t, real);
  const srv = await rogueServer(t, rogue.otherCa);
  const settings = checkAgentSettings(
    {
      identity_file: 'identity.toml',
      state_dir: mkdtempSync(join(tmpdir(), 'peerlink-p5-state-')),
      server: { host: LOOPBACK, udp_port: server.udpAddress().port, tls_port: srv.port, server_name: 'localhost' },
      dial: { allow_loopback: true, connect_timeout_ms: 2000 },
      services: { http: `${LOOPBACK}:9` },
    },
    '/nonexistent/agent.toml',
  );
  const identity = {
    equipmentId: EQUIPMENT_ID,
    registrationKey: deriveRegistrationKey(real.masterKey, EQUIPMENT_ID),
    accessKey: randomBytes(32),
    caCert: real.caPem,
  };
  const agent = createAgent({ identity, settings });
  await agent.start();
  t.teardown(() => agent.stop());
  await waitUntil(() => agent.status().state === 'registered', 'the agent to register', 5000);
  t.true(
    server.registration.notify(
      EQUIPMENT_ID,
      randomBytes(16),
      makeWake(deriveWakeKey(identity.accessKey), EQUIPMENT_ID, randomBytes(16), Date.now()),
    ),
  );
  await waitUntil(() => agent.counters.get('sessionsFailed') === 1, 'the session to fail', 5000);
  t.is(agent.counters.get('sessionsServed') + agent.counters.get('sessionsRefused'), 0);
  t.is(srv.bytes(), 0, 'no DEVICE_ATTACH (or anything else) reached the rogue server');
});

// A CA certificate (keyCertSign only, no serverAuth) presented as the server's certificate:
// OpenSSL rejects it with INVALID_PURPOSE. It must be refused, and reported as an untrusted
// certificate, not as SERVER_UNREACHABLE (which would hide a rogue server behind a
// network-error message; server-tls.ts once missed that code in CERT_ERRORS).
test('P5: a CA certificate presented as server certificate is refused and receives nothing', async (t) => {
  const srv = await rogueServer(t, { certPem: otherCa.certPem, keyPem: otherCa.keyPem });
  const err = await t.throwsAsync(dialServer({ port: srv.port }));
  t.true(isPeerlinkError(err), 'refused with a peerlink error');
  t.is(srv.secured(), 0, 'no TLS session was established');
  t.is(srv.bytes(), 0);
});

test('P5: a CA certificate as server certificate is reported as UNTRUSTED_CERTIFICATE', async (t) => {
  const srv = await rogueServer(t, { certPem: otherCa.certPem, keyPem: otherCa.keyPem });
  const err = await t.throwsAsync(dialServer({ port: srv.port }));
  t.is((err as { code?: string } | undefined)?.code, ErrorCodes.UNTRUSTED_CERTIFICATE);
});
