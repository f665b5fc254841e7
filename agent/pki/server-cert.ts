/**
 * The rendezvous server's TLS certificate, issued by the peerlink CA (ca.ts).
 * Devices and clients check it against the pinned CA and the host name or IP they dialled,
 * so every name the server is reached by must be in subjectAltName.
 */
import { X509Certificate, createHash, createPrivateKey, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import {
  type CertificateAndKey,
  certificateToPem,
  COMMON_NAME_MAX_CHARS,
  checkValidityDays,
  commonNameAttributes,
  generateRsaKeyPair,
  randomSerialNumberHex,
  validityWindow,
} from './ca.js';

/**
 * The server key's type. 'ec' (ECDSA P-256, the default) costs the server ~0.05 ms of signing per
 * full handshake where RSA 2048 costs ~1.5 ms (docs/measurements.md). 'rsa' remains for fleets
 * whose tooling expects it; devices and clients accept either (they verify against the CA only).
 */
export type ServerKeyType = 'ec' | 'rsa';
export const SERVER_KEY_TYPES: readonly ServerKeyType[] = ['ec', 'rsa'];
export const SERVER_CERT_DEFAULT_KEY_TYPE: ServerKeyType = 'ec';
const EC_CURVE = 'prime256v1';

/** The CA/Browser Forum ceiling; private CAs need not obey it, but short lives limit a leaked key. */
export const SERVER_CERT_VALIDITY_DAYS = 397;
export const SERVER_CERT_MAX_HOSTS = 100;
export const SERVER_CERT_FALLBACK_COMMON_NAME = 'peerlink rendezvous server';
/** RFC 1035 limits; a leading "*." wildcard label is allowed. */
const DNS_NAME_MAX_CHARS = 253;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

// subjectAltName GeneralName tags (RFC 5280 4.2.1.6).
const SAN_DNS = 2;
const SAN_IP = 7;

export interface IssueServerCertOptions {
  readonly caCertPem: string;
  readonly caKeyPem: string;
  /** DNS names and/or IP addresses the server is reached by; the first is also the CN. */
  readonly hosts: readonly string[];
  /** Default SERVER_CERT_VALIDITY_DAYS; never extends past the CA's own expiry. */
  readonly validityDays?: number;
  /** Default SERVER_CERT_DEFAULT_KEY_TYPE ('ec'). The CA itself stays RSA: it signs once, off the handshake path. */
  readonly keyType?: ServerKeyType;
}

function invalid(message: string, cause?: unknown): PeerlinkError {
  return new PeerlinkError(ErrorCodes.OPTIONS_INVALID, `issueServerCert: ${message}`, cause === undefined ? undefined : { cause });
}

/** 4 or 16 bytes of an IP literal; handles "::" and an embedded dotted IPv4 tail (forge's own parser does not). */
export function ipAddressBytes(ip: string): Buffer {
  const family = isIP(ip);
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  if (family !== 6 || ip.includes('%')) throw invalid(`not an IP address usable in a certificate: ${JSON.stringify(ip)}`);
  let text = ip;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4Tail?.[1] !== undefined) {
    const [a, b, c, d] = v4Tail[1].split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -v4Tail[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/**
 * Validate and normalise a host list: IP literals as given (IPv6 brackets dropped), DNS names
 * lower-cased without a trailing dot, duplicates removed. Throws OPTIONS_INVALID.
 */
export function normalizeServerHosts(hosts: readonly string[]): string[] {
  if (!Array.isArray(hosts) || hosts.length === 0) throw invalid('hosts must list at least one DNS name or IP address');
  if (hosts.length > SERVER_CERT_MAX_HOSTS) throw invalid(`at most ${SERVER_CERT_MAX_HOSTS} hosts, found ${hosts.length}`);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of hosts) {
    if (typeof raw !== 'string') throw invalid(`hosts: expected strings, found ${typeof raw}`);
    const bracketed = /^\[(.*)\]$/.exec(raw.trim());
    const host = bracketed?.[1] ?? raw.trim().toLowerCase().replace(/\.$/, '');
    let key: string;
    if (isIP(host) !== 0) {
      key = `ip:${ipAddressBytes(host).toString('hex')}`;
    } else {
      const labels = host.startsWith('*.') ? host.slice(2).split('.') : host.split('.');
      if (bracketed || host.length > DNS_NAME_MAX_CHARS || !labels.every((l) => DNS_LABEL.test(l))) {
        throw invalid(`not a DNS name or IP address: ${JSON.stringify(raw)}`);
      }
      key = `dns:${host}`;
    }
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(host);
  }
  return out;
}

/** GeneralNames for subjectAltName: iPAddress (raw bytes) or dNSName. */
function subjectAltNames(hosts: readonly string[]): { type: number; value: string }[] {
  return hosts.map((host) =>
    isIP(host) !== 0 ? { type: SAN_IP, value: ipAddressBytes(host).toString('binary') } : { type: SAN_DNS, value: host },
  );
}

function parseCa(
  caCertPem: string,
  caKeyPem: string,
): { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey; x509: X509Certificate } {
  let x509: X509Certificate;
  let cert: forge.pki.Certificate;
  let key: forge.pki.rsa.PrivateKey;
  try {
    x509 = new X509Certificate(caCertPem);
    cert = forge.pki.certificateFromPem(caCertPem);
  } catch (err) {
    throw invalid(`caCertPem is not a readable PEM certificate (${(err as Error).message})`, err);
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(caKeyPem))) throw invalid('caKeyPem is not the private key of caCertPem');
    key = forge.pki.privateKeyFromPem(caKeyPem);
  } catch (err) {
    if (err instanceof PeerlinkError) throw err;
    throw invalid(`caKeyPem is not a readable unencrypted RSA private key (${(err as Error).message})`, err);
  }
  if (!x509.ca) throw invalid('caCertPem is not a CA certificate (basicConstraints cA is not set)');
  return { cert, key, x509 };
}

/** The CA's subjectKeyIdentifier, so that authorityKeyIdentifier names the issuer's key, not the leaf's. */
function caKeyIdentifier(caCert: forge.pki.Certificate): string {
  const ext = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  // forge's `keyIdentifier: true` would hash the *leaf's* public key, which is wrong here.
  return ext?.subjectKeyIdentifier !== undefined
    ? forge.util.hexToBytes(ext.subjectKeyIdentifier)
    : caCert.generateSubjectKeyIdentifier().getBytes();
}

/**
 * A fresh ECDSA P-256 key: its PEM (PKCS#8), SubjectPublicKeyInfo as forge ASN.1, and its
 * subjectKeyIdentifier (RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits, here the
 * uncompressed point 04||x||y). Node makes the key; forge cannot represent EC keys.
 */
function generateEcKey(): { keyPem: string; spki: forge.asn1.Asn1; keyIdentifier: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: EC_CURVE });
  const jwk = publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]);
  const spkiDer = publicKey.export({ type: 'spki', format: 'der' });
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    // Kept as raw bits (no attempt to read the point as ASN.1), so it re-encodes byte for byte.
    spki: (forge.asn1.fromDer as unknown as (der: forge.util.ByteStringBuffer, o: { decodeBitStrings: boolean }) => forge.asn1.Asn1)(
      forge.util.createBuffer(spkiDer.toString('binary')),
      { decodeBitStrings: false },
    ),
    keyIdentifier: createHash('sha1').update(point).digest('binary'),
  };
}

/**
 * Issue a TLS server certificate (serverAuth, SHA-256, signed by the given RSA CA) for `hosts`,
 * with an ECDSA P-256 key (default) or an RSA 2048 one (`keyType: 'rsa'`).
 *
 * forge builds and encodes the certificate (it already does the CA's) but knows only RSA keys, so
 * for 'ec' the SubjectPublicKeyInfo of the to-be-signed part is swapped for the EC key's and the
 * signature is made with node:crypto (the same RSASSA-PKCS1-v1_5/SHA-256 forge would make).
 */
export function issueServerCert(options: IssueServerCertOptions): CertificateAndKey {
  const keyType = options.keyType ?? SERVER_CERT_DEFAULT_KEY_TYPE;
  if (!SERVER_KEY_TYPES.includes(keyType))
    throw invalid(`keyType must be one of ${SERVER_KEY_TYPES.join(', ')}, found ${JSON.stringify(keyType)}`);
  const hosts = normalizeServerHosts(options.hosts);
  const days = checkValidityDays(options.validityDays, SERVER_CERT_VALIDITY_DAYS, 'issueServerCert');
  const ca = parseCa(options.caCertPem, options.caKeyPem);

  const now = new Date();
  const validity = validityWindow(days, now);
  if (ca.cert.validity.notAfter.getTime() <= now.getTime()) throw invalid(`the CA expired on ${ca.x509.validTo}`);
  // A leaf that outlives its CA would be rejected once the CA expires anyway; say so in the cert.
  if (validity.notAfter > ca.cert.validity.notAfter) validity.notAfter = ca.cert.validity.notAfter;

  const rsa = keyType === 'rsa' ? generateRsaKeyPair() : null;
  const ec = keyType === 'ec' ? generateEcKey() : null;
  const cert = forge.pki.createCertificate();
  // For 'ec', a placeholder forge can encode; its SubjectPublicKeyInfo is replaced below.
  cert.publicKey = rsa?.publicKey ?? forge.pki.setRsaPublicKey(new forge.jsbn.BigInteger('1'), new forge.jsbn.BigInteger('65537'));
  cert.serialNumber = randomSerialNumberHex();
  cert.validity = validity;
  // Clients match SANs only (RFC 6125); the CN is for people reading the certificate and
  // is bounded at 64 characters, so a longer first name falls back to a generic label.
  const first = hosts[0] ?? '';
  cert.setSubject(commonNameAttributes(first.length <= COMMON_NAME_MAX_CHARS ? first : SERVER_CERT_FALLBACK_COMMON_NAME));
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    // keyEncipherment is RSA key transport (TLS 1.2 RSA kex); an ECDSA key only signs.
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: rsa !== null, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: subjectAltNames(hosts) },
    ec
      ? {
          name: 'subjectKeyIdentifier',
          value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, ec.keyIdentifier),
        }
      : { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caKeyIdentifier(ca.cert) },
  ]);
  if (rsa) {
    cert.sign(ca.key, forge.md.sha256.create());
    return { certPem: certificateToPem(cert), keyPem: rsa.keyPem };
  }
  const sha256WithRsa = forge.pki.oids.sha256WithRSAEncryption!;
  cert.signatureOid = sha256WithRsa;
  cert.siginfo.algorithmOid = sha256WithRsa;
  const tbs = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, [3] extensions.
  const fields = tbs.value as forge.asn1.Asn1[];
  if (fields.length !== 8)
    throw new PeerlinkError(ErrorCodes.INTERNAL, `issueServerCert: unexpected TBSCertificate layout (${fields.length} fields)`);
  fields[6] = ec!.spki;
  const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  (cert as unknown as { tbsCertificate: forge.asn1.Asn1 }).tbsCertificate = tbs;
  cert.signature = cryptoSign('sha256', tbsDer, options.caKeyPem).toString('binary');
  return { certPem: certificateToPem(cert), keyPem: ec!.keyPem };
}
