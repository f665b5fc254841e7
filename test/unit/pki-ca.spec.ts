import test from 'ava';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import forge from 'node-forge';
import { ErrorCodes } from '../../agent/common/errors.js';
import { CA_DEFAULT_COMMON_NAME, SERIAL_NUMBER_BYTES, createCa } from '../../agent/pki/ca.js';
import { SERVER_CERT_VALIDITY_DAYS, ipAddressBytes, issueServerCert, normalizeServerHosts } from '../../agent/pki/server-cert.js';

const DAY_MS = 24 * 60 * 60_000;
const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
const SHA256_WITH_RSA_OID = '1.2.840.113549.1.1.11';
/** forge's global switches (missing from its typings). */
const forgeOptions = (forge as unknown as { options: { usePureJavaScript: boolean } }).options;

// One CA and one server certificate shared by the read-only tests (key generation is the slow part).
const ca = createCa();
const caX509 = new X509Certificate(ca.certPem);
const server = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', '127.0.0.1', '::1'] });
const serverX509 = new X509Certificate(server.certPem);
// The RSA server key existing fleets have (forge, which reads only RSA keys, can parse this one).
const rsaServer = issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['localhost', '127.0.0.1'], keyType: 'rsa' });

/** An extension's extnValue (DER), found by OID in a certificate forge cannot parse whole (an EC key). */
function extensionValue(certPem: string, oid: string): string | undefined {
  const der = new X509Certificate(certPem).raw.toString('binary');
  const cert = forge.asn1.fromDer(der);
  const tbs = (cert.value as forge.asn1.Asn1[])[0]!;
  const exts = (tbs.value as forge.asn1.Asn1[]).find((f) => f.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && f.type === 3);
  for (const ext of ((exts?.value as forge.asn1.Asn1[])[0]?.value ?? []) as forge.asn1.Asn1[]) {
    const parts = ext.value as forge.asn1.Asn1[];
    if (forge.asn1.derToOid(parts[0]!.value as string) === oid) return parts[parts.length - 1]!.value as string;
  }
  return undefined;
}

function daysBetween(from: string, to: string): number {
  return (Date.parse(to) - Date.parse(from)) / DAY_MS;
}

test('createCa: a self-signed CA certificate with its key', (t) => {
  t.true(caX509.ca);
  t.is(caX509.subject, `CN=${CA_DEFAULT_COMMON_NAME}`);
  t.is(caX509.issuer, caX509.subject);
  t.true(caX509.verify(caX509.publicKey));
  t.true(caX509.checkPrivateKey(createPrivateKey(ca.keyPem)));
  t.is(caX509.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  t.false(ca.certPem.includes('\r'));
  t.regex(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
});

test('createCa: CA extensions (basicConstraints critical, keyCertSign + cRLSign, SKI) and SHA-256', (t) => {
  const cert = forge.pki.certificateFromPem(ca.certPem);
  const bc = cert.getExtension('basicConstraints') as { cA: boolean; critical: boolean };
  t.true(bc.cA);
  t.true(bc.critical);
  const ku = cert.getExtension('keyUsage') as Record<string, boolean>;
  t.true(ku.keyCertSign);
  t.true(ku.cRLSign);
  t.false(ku.digitalSignature);
  t.true(cert.verifySubjectKeyIdentifier());
  t.is(cert.siginfo.algorithmOid, SHA256_WITH_RSA_OID);
});

test('createCa: random positive 16-byte serial numbers', (t) => {
  const other = new X509Certificate(createCa().certPem);
  for (const serial of [caX509.serialNumber, other.serialNumber]) {
    t.is(serial.length, SERIAL_NUMBER_BYTES * 2);
    t.true(parseInt(serial.slice(0, 2), 16) < 0x80, 'the DER INTEGER is positive');
  }
  t.not(caX509.serialNumber, other.serialNumber);
});

test('createCa: default validity is ten years; options are honoured', (t) => {
  const days = daysBetween(caX509.validFrom, caX509.validTo);
  t.true(days >= 3650 && days <= 3651, `${days}`);
  t.true(Date.parse(caX509.validFrom) <= Date.now(), 'valid from now (backdated)');

  const custom = new X509Certificate(createCa({ commonName: 'factory_ca é', validityDays: 30 }).certPem);
  t.is(custom.subject, 'CN=factory_ca é');
  const customDays = daysBetween(custom.validFrom, custom.validTo);
  t.true(customDays >= 30 && customDays <= 31, `${customDays}`);
});

test('createCa: rejects bad options with OPTIONS_INVALID', (t) => {
  for (const options of [
    { validityDays: 0 },
    { validityDays: 1.5 },
    { validityDays: 1e6 },
    { commonName: '' },
    { commonName: 'x'.repeat(65) },
  ]) {
    t.throws(() => createCa(options), { code: ErrorCodes.OPTIONS_INVALID }, JSON.stringify(options));
  }
});

test.serial('createCa: key generation is native even when forge is told to use pure JavaScript', (t) => {
  // forge's own generateKeyPair would take seconds in pure JS; ours must not depend on that switch.
  const saved = forgeOptions.usePureJavaScript;
  forgeOptions.usePureJavaScript = true;
  try {
    const started = performance.now();
    createCa();
    const elapsedMs = performance.now() - started;
    t.true(elapsedMs < 3000, `createCa took ${elapsedMs.toFixed(0)} ms`);
  } finally {
    forgeOptions.usePureJavaScript = saved;
  }
});

test('issueServerCert: issued by the CA, for the given names, for server authentication', (t) => {
  t.false(serverX509.ca);
  t.true(serverX509.checkIssued(caX509));
  t.true(serverX509.verify(caX509.publicKey));
  t.false(serverX509.verify(serverX509.publicKey));
  t.true(serverX509.checkPrivateKey(createPrivateKey(server.keyPem)));
  t.is(serverX509.subject, 'CN=localhost');
  t.is(serverX509.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
  t.is(serverX509.checkHost('localhost'), 'localhost');
  t.is(serverX509.checkIP('127.0.0.1'), '127.0.0.1');
  t.is(serverX509.checkIP('::1'), '::1');
  t.is(serverX509.checkHost('example.com'), undefined);
  t.deepEqual(serverX509.keyUsage, [SERVER_AUTH_OID]);
  const days = daysBetween(serverX509.validFrom, serverX509.validTo);
  t.true(days >= SERVER_CERT_VALIDITY_DAYS && days <= SERVER_CERT_VALIDITY_DAYS + 1, `${days}`);
  t.not(serverX509.serialNumber, caX509.serialNumber);
});

test('issueServerCert: an ECDSA P-256 key by default, signed by the RSA CA; SKI is the SHA-1 of its point', (t) => {
  t.is(serverX509.publicKey.asymmetricKeyType, 'ec');
  t.is(serverX509.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const jwk = serverX509.publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const ski = forge.asn1.fromDer(extensionValue(server.certPem, '2.5.29.14')!).value as string;
  t.is(forge.util.bytesToHex(ski), createHash('sha1').update(point).digest('hex'));
  // keyUsage: digitalSignature only (bit 0); keyEncipherment is for RSA key transport.
  const ku = forge.asn1.fromDer(extensionValue(server.certPem, '2.5.29.15')!).value as string;
  t.is(ku.charCodeAt(ku.length - 1) & 0xe0, 0x80);
  t.throws(() => issueServerCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, hosts: ['a.example'], keyType: 'dsa' as 'ec' }), {
    message: /keyType must be one of ec, rsa/,
  });
});

test('issueServerCert: keyType rsa still issues RSA 2048 (existing fleets)', (t) => {
  const x = new X509Certificate(rsaServer.certPem);
  t.is(x.publicKey.asymmetricKeyType, 'rsa');
  t.is(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  t.true(x.verify(caX509.publicKey));
  t.true(x.checkPrivateKey(createPrivateKey(rsaServer.keyPem)));
});

test('issueServerCert: extensions (keyUsage, AKI = CA SKI, SHA-256)', (t) => {
  const cert = forge.pki.certificateFromPem(rsaServer.certPem);
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const ku = cert.getExtension('keyUsage') as Record<string, boolean>;
  t.true(ku.digitalSignature);
  t.true(ku.keyEncipherment);
  t.false(ku.keyCertSign);
  t.is((cert.getExtension('basicConstraints') as { cA: boolean }).cA, false);
  const aki = forge.asn1.fromDer((cert.getExtension('authorityKeyIdentifier') as { value: string }).value);
  const keyId = (aki.value as forge.asn1.Asn1[])[0]?.value as string;
  t.is(
    forge.util.bytesToHex(keyId),
    (caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier: string }).subjectKeyIdentifier,
  );
  t.is(cert.siginfo.algorithmOid, SHA256_WITH_RSA_OID);
  t.true(caCert.verify(cert));
});

test('issueServerCert: never outlives its CA', (t) => {
  const shortCa = createCa({ validityDays: 30 });
  const leaf = new X509Certificate(
    issueServerCert({ caCertPem: shortCa.certPem, caKeyPem: shortCa.keyPem, hosts: ['example.com'] }).certPem,
  );
  t.is(leaf.validTo, new X509Certificate(shortCa.certPem).validTo);
});

test('issueServerCert: rejects bad hosts, a mismatched key and a non-CA issuer with OPTIONS_INVALID', (t) => {
  const base = { caCertPem: ca.certPem, caKeyPem: ca.keyPem };
  for (const hosts of [[], ['bad host'], ['-a.example'], ['a..b'], ['[example.com]'], ['fe80::1%eth0'], ['x'.repeat(64) + '.com']]) {
    t.throws(() => issueServerCert({ ...base, hosts }), { code: ErrorCodes.OPTIONS_INVALID }, JSON.stringify(hosts));
  }
  t.throws(() => issueServerCert({ ...base, hosts: ['a.example'], validityDays: -1 }), { code: ErrorCodes.OPTIONS_INVALID });
  const otherCa = createCa();
  t.throws(() => issueServerCert({ caCertPem: ca.certPem, caKeyPem: otherCa.keyPem, hosts: ['a.example'] }), {
    code: ErrorCodes.OPTIONS_INVALID,
  });
  t.throws(() => issueServerCert({ caCertPem: server.certPem, caKeyPem: server.keyPem, hosts: ['a.example'] }), {
    code: ErrorCodes.OPTIONS_INVALID,
  });
  t.throws(() => issueServerCert({ caCertPem: 'not a pem', caKeyPem: ca.keyPem, hosts: ['a.example'] }), {
    code: ErrorCodes.OPTIONS_INVALID,
  });
});

test('normalizeServerHosts / ipAddressBytes: normalisation and IP encodings', (t) => {
  t.deepEqual(normalizeServerHosts(['Example.COM.', 'example.com', '[::1]', '0:0::1', '*.Peer.Example', '10.0.0.1']), [
    'example.com',
    '::1',
    '*.peer.example',
    '10.0.0.1',
  ]);
  t.is(ipAddressBytes('10.1.2.3').toString('hex'), '0a010203');
  t.is(ipAddressBytes('::').toString('hex'), '0'.repeat(32));
  t.is(ipAddressBytes('2001:db8::1').toString('hex'), '20010db8000000000000000000000001');
  t.is(ipAddressBytes('fe80::').toString('hex'), 'fe80' + '0'.repeat(28));
  t.is(ipAddressBytes('::ffff:192.0.2.1').toString('hex'), '00000000000000000000ffffc0000201');
  t.is(ipAddressBytes('1:2:3:4:5:6:7:8').toString('hex'), '00010002000300040005000600070008');
});

// --- real TLS handshakes ---

async function withTlsServer(cert: { certPem: string; keyPem: string }, fn: (port: number) => Promise<void>): Promise<void> {
  const srv = tls.createServer({ cert: cert.certPem, key: cert.keyPem }, (socket) => socket.end('hello'));
  srv.on('tlsClientError', () => undefined); // rejected handshakes are expected here
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  try {
    await fn((srv.address() as AddressInfo).port);
  } finally {
    srv.close();
  }
}

function connect(options: tls.ConnectionOptions): Promise<{ authorized: boolean; data: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options, () => {
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (data += chunk));
      socket.on('end', () => resolve({ authorized: socket.authorized, data }));
    });
    socket.on('error', reject);
  });
}

test('tls: a client pinning the CA accepts the server by name and by IP (ECDSA and RSA keys)', async (t) => {
  for (const cert of [server, rsaServer]) {
    await withTlsServer(cert, async (port) => {
      const byName = await connect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost' });
      t.deepEqual(byName, { authorized: true, data: 'hello' });
      const byIp = await connect({ host: '127.0.0.1', port, ca: ca.certPem });
      t.deepEqual(byIp, { authorized: true, data: 'hello' });
    });
  }
});

test('tls: a certificate from a different CA is rejected', async (t) => {
  const otherCa = createCa();
  const impostor = issueServerCert({ caCertPem: otherCa.certPem, caKeyPem: otherCa.keyPem, hosts: ['localhost', '127.0.0.1'] });
  await withTlsServer(impostor, async (port) => {
    const err = await t.throwsAsync(connect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost' }));
    t.is((err as NodeJS.ErrnoException).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });
});

test('tls: a name not in the certificate is rejected', async (t) => {
  await withTlsServer(server, async (port) => {
    const err = await t.throwsAsync(connect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'example.com' }));
    t.is((err as NodeJS.ErrnoException).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });
});
