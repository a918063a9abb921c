import type { CertificateSummary } from './inspect.js';

/** Human lines for a certificate summary (the commands' non-JSON output). */
export function printSummary(s: CertificateSummary, log: (line: string) => void): void {
  log(`Subject     ${s.subject}`);
  log(`Issuer      ${s.issuer}${s.selfSigned ? ' (self-signed)' : ''}`);
  if (s.subjectAltNames.length > 0) log(`Names       ${s.subjectAltNames.join(', ')}`);
  const expiry = s.daysLeft < 0 ? `EXPIRED ${-s.daysLeft} days ago` : `${s.daysLeft} days left`;
  log(`Valid       ${s.notBefore} to ${s.notAfter} (${expiry})`);
  log(`CA          ${s.isCa ? 'yes' : 'no'}`);
  if (s.extendedKeyUsage.length > 0) log(`Usage       ${s.extendedKeyUsage.map(ekuName).join(', ')}`);
  log(`Key         ${s.keyType}`);
  log(`SHA-256     ${s.fingerprintSha256}`);
  if (s.chain.length > 0) log(`Chain       ${s.chain.join(' <- ')}`);
}

function ekuName(oid: string): string {
  if (oid === '1.3.6.1.5.5.7.3.1') return 'TLS server';
  if (oid === '1.3.6.1.5.5.7.3.2') return 'TLS client';
  return oid;
}
