import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type CertificateSummary, describeCertificate } from './inspect.js';
import { CertError, runOpenssl } from './openssl.js';

/**
 * A small private CA for tests and small deployments, made with the openssl command line
 * (Node can create keys but not certificates). Keys are EC P-256 by default: every TLS
 * stack a SIP client uses accepts them; RSA 2048 is there for older clients.
 */
export type KeyType = 'ec' | 'rsa';
/** `both` is what servers in mutual TLS need: they present the certificate as TLS clients too. */
export type CertUsage = 'server' | 'client' | 'both';

export interface CreateCaOptions {
  dir: string;
  commonName?: string;
  organization?: string;
  days?: number;
  keyType?: KeyType;
  force?: boolean;
}

export interface IssuedFiles {
  cert: string;
  key: string;
  summary: CertificateSummary;
}

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';

export function createCa(opts: CreateCaOptions): IssuedFiles {
  const dir = resolve(opts.dir);
  const cert = join(dir, CA_CERT_FILE);
  const key = join(dir, CA_KEY_FILE);
  refuseOverwrite([cert, key], opts.force);
  mkdirSync(dir, { recursive: true });
  writeKey(key, opts.keyType ?? 'ec');
  runOpenssl([
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-sha256',
    '-days',
    String(days(opts.days ?? 3650)),
    '-subj',
    subject(opts.commonName ?? 'Parley CA', opts.organization),
    // RFC 5280 4.2.1.9 / 4.2.1.3: a CA certificate is marked CA and may only sign.
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-addext',
    'subjectKeyIdentifier=hash',
    '-set_serial',
    serial(),
    '-out',
    cert,
  ]);
  return { cert, key, summary: describeCertificate(cert) };
}

export interface IssueOptions {
  /** Folder holding ca.crt and ca.key (from createCa). */
  caDir: string;
  /** FQDN (or IP) the certificate is for; becomes the CN and the first SAN. */
  name: string;
  /** More names: `DNS:x`, `IP:x`, `email:x`, or bare (IP or DNS guessed). */
  sans?: string[];
  usage?: CertUsage;
  days?: number;
  keyType?: KeyType;
  organization?: string;
  /** Where NAME.crt and NAME.key go; default the CA folder. */
  outDir?: string;
  force?: boolean;
}

export function issueCertificate(opts: IssueOptions): IssuedFiles {
  const caDir = resolve(opts.caDir);
  const caCert = join(caDir, CA_CERT_FILE);
  const caKey = join(caDir, CA_KEY_FILE);
  for (const f of [caCert, caKey]) {
    if (!existsSync(f)) {
      throw new CertError(
        `${f} not found`,
        'CERT_NOT_FOUND',
        `create a CA first: parley certs create-ca --dir ${opts.caDir}`,
      );
    }
  }
  const sans = subjectAltNames(opts.name, opts.sans ?? []);
  const outDir = resolve(opts.outDir ?? caDir);
  const base = opts.name.replace(/^\*\./, 'wildcard.').replace(/[^A-Za-z0-9._@-]/g, '_');
  const cert = join(outDir, `${base}.crt`);
  const key = join(outDir, `${base}.key`);
  refuseOverwrite([cert, key], opts.force);
  mkdirSync(outDir, { recursive: true });
  writeKey(key, opts.keyType ?? 'ec');

  const work = mkdtempSync(join(tmpdir(), 'parley-certs-'));
  try {
    const csr = join(work, 'req.csr');
    const ext = join(work, 'ext.cnf');
    runOpenssl(['req', '-new', '-key', key, '-subj', subject(opts.name, opts.organization), '-out', csr]);
    const usage = opts.usage ?? 'both';
    const eku =
      usage === 'server' ? 'serverAuth' : usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth';
    writeFileSync(
      ext,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${eku}`,
        // RFC 5922 7.1: SIP peers match the domain against the SAN, not the CN.
        `subjectAltName=${sans.join(',')}`,
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid',
        '',
      ].join('\n'),
    );
    runOpenssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-set_serial',
      serial(),
      '-days',
      String(days(opts.days ?? 825)),
      '-sha256',
      '-extfile',
      ext,
      '-out',
      cert,
    ]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { cert, key, summary: describeCertificate(cert) };
}

/** Checks a certificate chains to a CA with `openssl verify`; returns openssl's verdict. */
export function verifyCertificate(certFile: string, caFile: string): { ok: boolean; detail: string } {
  try {
    const out = runOpenssl(['verify', '-CAfile', caFile, certFile]).trim();
    return { ok: out.endsWith(': OK'), detail: out };
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
}

const DNS_NAME_RE =
  /^(\*\.)?(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function subjectAltNames(name: string, extra: string[]): string[] {
  const out: string[] = [];
  for (const raw of [name, ...extra]) {
    const entry = sanEntry(raw.trim());
    if (!out.includes(entry)) out.push(entry);
  }
  return out;
}

function sanEntry(text: string): string {
  const m = /^(DNS|IP|email|URI):(.+)$/i.exec(text);
  const [kind, value] = m
    ? [m[1].toUpperCase(), m[2]]
    : [isIP(text) ? 'IP' : text.includes('@') ? 'EMAIL' : 'DNS', text];
  const bad = (why: string) =>
    new CertError(
      `${JSON.stringify(text)} ${why}`,
      'CERT_BAD_NAME',
      'use an FQDN, an IP address, or DNS:/IP:/email:/URI: prefixes',
    );
  switch (kind) {
    case 'IP':
      if (!isIP(value)) throw bad('is not an IP address');
      return `IP:${value}`;
    case 'DNS':
      if (!DNS_NAME_RE.test(value)) throw bad('is not a DNS name');
      return `DNS:${value.toLowerCase()}`;
    case 'EMAIL':
      if (!/^[^@\s,]+@[^@\s,]+$/.test(value)) throw bad('is not an email address');
      return `email:${value}`;
    default:
      if (/[\s,]/.test(value)) throw bad('is not a URI');
      return `URI:${value}`;
  }
}

function subject(commonName: string, organization?: string): string {
  // openssl -subj syntax: escape the separators it treats specially.
  const esc = (s: string) => s.replace(/[\\/=+,]/g, (c) => `\\${c}`);
  return `${organization ? `/O=${esc(organization)}` : ''}/CN=${esc(commonName)}`;
}

function refuseOverwrite(files: string[], force?: boolean): void {
  if (force) return;
  const existing = files.filter((f) => existsSync(f));
  if (existing.length > 0) {
    throw new CertError(
      `${existing.join(' and ')} already exist`,
      'CERT_EXISTS',
      'pass --force to replace them',
    );
  }
}

function writeKey(path: string, type: KeyType): void {
  const { privateKey } =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  rmSync(path, { force: true });
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
}

function serial(): string {
  // RFC 5280 4.1.2.2: positive, at most 20 octets; random so reissues never collide.
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f;
  return `0x${bytes.toString('hex')}`;
}

function days(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 36500)
    throw new CertError(`${n} is not a number of days (1-36500)`, 'CERT_BAD_NAME');
  return n;
}
