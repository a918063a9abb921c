import type { TLSSocket } from 'node:tls';

/**
 * The DNS names a verified peer certificate vouches for: subjectAltName dNSName entries,
 * else the subject CN (RFC 5922 7.1). Empty when the peer presented no verified certificate.
 */
export function peerCertificateNames(socket: TLSSocket): string[] {
  if (!socket.authorized) return [];
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return [];
  const names: string[] = [];
  if (cert.subjectaltname) {
    for (const part of cert.subjectaltname.split(',')) {
      const entry = part.trim();
      if (entry.startsWith('DNS:')) names.push(entry.slice(4).toLowerCase());
    }
  }
  const cn = cert.subject?.CN;
  if (names.length === 0 && typeof cn === 'string') names.push(cn.toLowerCase());
  return names;
}
