/**
 * The private certificate authority that signs the rendezvous server's certificate.
 * Devices and clients pin this CA (it travels in each device identity), so no public CA
 * is involved and a certificate from any other CA is refused.
 *
 * Also home of the few X.509 building blocks that server-cert.ts shares: key generation,
 * serial numbers, validity windows, names.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { ErrorCodes, PeerlinkError } from '../common/errors.js';

export const CA_VALIDITY_DAYS = 3650;
export const CA_DEFAULT_COMMON_NAME = 'peerlink rendezvous CA';
/** Longest validity any peerlink certificate may be given (a typo guard, not policy). */
export const CERT_MAX_VALIDITY_DAYS = 36_500;
/** X.520 upper bound for a commonName. */
export const COMMON_NAME_MAX_CHARS = 64;
export const RSA_KEY_BITS = 2048;
export const SERIAL_NUMBER_BYTES = 16;
/** notBefore is set this far in the past so that a peer whose clock runs a little slow still accepts a fresh certificate. */
export const CERT_BACKDATE_MS = 60 * 60_000;
const DAY_MS = 24 * 60 * 60_000;

export interface CreateCaOptions {
  /** Subject (and issuer) commonName; default CA_DEFAULT_COMMON_NAME. */
  readonly commonName?: string;
  /** Default CA_VALIDITY_DAYS. */
  readonly validityDays?: number;
}

/** A certificate and its private key, both PEM (the key is unencrypted PKCS#8). */
export interface CertificateAndKey {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface RsaKeyPair {
  readonly keyPem: string;
  readonly privateKey: forge.pki.rsa.PrivateKey;
  readonly publicKey: forge.pki.rsa.PublicKey;
}

/**
 * RSA key pair from Node's native generator. node-forge would delegate to the same call
 * unless `forge.options.usePureJavaScript` is set (anywhere in the process), in which case it
 * falls back to a pure-JS search that takes seconds; calling Node directly rules that out.
 */
export function generateRsaKeyPair(): RsaKeyPair {
  const { privateKey: keyPem } = generateKeyPairSync('rsa', {
    modulusLength: RSA_KEY_BITS,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const privateKey = forge.pki.privateKeyFromPem(keyPem);
  const publicKey = forge.pki.setRsaPublicKey(privateKey.n, privateKey.e);
  return { keyPem, privateKey, publicKey };
}

/**
 * A random, positive serial of exactly SERIAL_NUMBER_BYTES bytes, as forge's hex string.
 * The top bit is cleared (DER INTEGERs are signed) and the next one set, so the encoding
 * is always minimal and 16 bytes long; 126 random bits remain.
 */
export function randomSerialNumberHex(): string {
  const bytes = randomBytes(SERIAL_NUMBER_BYTES);
  bytes[0] = ((bytes[0] ?? 0) & 0x3f) | 0x40;
  return bytes.toString('hex');
}

export function checkValidityDays(value: number | undefined, fallback: number, what: string): number {
  const days = value ?? fallback;
  if (!Number.isInteger(days) || days < 1 || days > CERT_MAX_VALIDITY_DAYS) {
    throw new PeerlinkError(
      ErrorCodes.OPTIONS_INVALID,
      `${what}: validityDays must be an integer from 1 to ${CERT_MAX_VALIDITY_DAYS}, found ${String(value)}`,
    );
  }
  return days;
}

export function validityWindow(days: number, now: Date = new Date()): { notBefore: Date; notAfter: Date } {
  return {
    notBefore: new Date(now.getTime() - CERT_BACKDATE_MS),
    notAfter: new Date(now.getTime() + days * DAY_MS),
  };
}

/** PEM with LF line ends (forge writes CRLF). */
export function certificateToPem(cert: forge.pki.Certificate): string {
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}

/** A one-attribute (CN) name, UTF8String-encoded: forge's default, PrintableString, cannot hold '_', '@' or non-ASCII. */
export function commonNameAttributes(commonName: string): forge.pki.CertificateField[] {
  return [
    {
      name: 'commonName',
      value: commonName,
      // forge's typings call this an asn1.Class; the field actually holds the asn1.Type tag.
      valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class,
    },
  ];
}

function checkCommonName(value: string | undefined): string {
  const cn = value ?? CA_DEFAULT_COMMON_NAME;
  if (typeof cn !== 'string' || cn.trim() === '' || [...cn].length > COMMON_NAME_MAX_CHARS || /[\u0000-\u001f\u007f]/.test(cn)) {
    throw new PeerlinkError(
      ErrorCodes.OPTIONS_INVALID,
      `createCa: commonName must be 1-${COMMON_NAME_MAX_CHARS} printable characters, found ${JSON.stringify(value)}`,
    );
  }
  return cn;
}

/** A fresh self-signed CA: RSA 2048, SHA-256, basicConstraints cA (critical), keyCertSign + cRLSign. */
export function createCa(options: CreateCaOptions = {}): CertificateAndKey {
  const commonName = checkCommonName(options.commonName);
  const days = checkValidityDays(options.validityDays, CA_VALIDITY_DAYS, 'createCa');
  const keys = generateRsaKeyPair();

  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerialNumberHex();
  cert.validity = validityWindow(days);
  const name = commonNameAttributes(commonName);
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    // pathLenConstraint 0: this CA signs leaf certificates only, never another CA.
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: certificateToPem(cert), keyPem: keys.keyPem };
}
