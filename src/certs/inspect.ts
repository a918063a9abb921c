import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { CertError } from './openssl.js';

export interface CertificateSummary {
  file: string;
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  /** Whole days until expiry; negative once expired. */
  daysLeft: number;
  subjectAltNames: string[];
  isCa: boolean;
  selfSigned: boolean;
  /** Extended key usages by OID (1.3.6.1.5.5.7.3.1 server, .2 client), when present. */
  extendedKeyUsage: string[];
  keyType: string;
  fingerprintSha256: string;
  /** Certificates after the first in the file (a chain), by subject. */
  chain: string[];
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads a PEM file (first certificate, then the rest as its chain) with Node's X.509 parser. */
export function describeCertificate(file: string, now: Date = new Date()): CertificateSummary {
  if (!existsSync(file)) throw new CertError(`${file} not found`, 'CERT_NOT_FOUND');
  const pems = readFileSync(file, 'utf8').match(PEM_CERT_RE) ?? [];
  if (pems.length === 0) throw new CertError(`${file} holds no PEM certificate`, 'CERT_INVALID');
  let certs: X509Certificate[];
  try {
    certs = pems.map((p) => new X509Certificate(p));
  } catch (err) {
    throw new CertError(`${file}: ${(err as Error).message}`, 'CERT_INVALID');
  }
  const [x] = certs;
  const notAfter = new Date(x.validTo);
  return {
    file,
    subject: oneLine(x.subject),
    issuer: oneLine(x.issuer),
    serialNumber: x.serialNumber,
    notBefore: new Date(x.validFrom).toISOString(),
    notAfter: notAfter.toISOString(),
    daysLeft: Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000),
    subjectAltNames: x.subjectAltName
      ? x.subjectAltName.split(', ').map((s) => s.replace(/^IP Address:/, 'IP:'))
      : [],
    isCa: x.ca,
    selfSigned: x.checkIssued(x) && x.verify(x.publicKey),
    extendedKeyUsage: x.keyUsage ?? [],
    keyType: x.publicKey.asymmetricKeyType ?? 'unknown',
    fingerprintSha256: x.fingerprint256,
    chain: certs.slice(1).map((c) => oneLine(c.subject)),
  };
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}
