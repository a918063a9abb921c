import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate } from '../../src/certs/inspect.js';
import { CertError } from '../../src/certs/openssl.js';
import { createCa, issueCertificate, subjectAltNames, verifyCertificate } from '../../src/certs/pki.js';
import { ensureDebianCommand } from '../support/debian.js';
import { scratchDir } from '../support/scratch.js';

const fixtures = resolve(import.meta.dirname, '../../fixtures/pki');

beforeAll(() => {
  ensureDebianCommand('openssl', 'openssl');
});

function opensslVerify(ca: string, cert: string): { status: number | null; out: string } {
  const r = spawnSync('openssl', ['verify', '-CAfile', ca, cert], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('createCa / issueCertificate', () => {
  it('makes a CA and a server certificate that openssl verify accepts', () => {
    const dir = scratchDir('parley-ca-');
    const ca = createCa({ dir, commonName: 'Corp Test CA', organization: 'Corp' });
    expect(ca.summary.isCa).toBe(true);
    expect(ca.summary.selfSigned).toBe(true);
    expect(ca.summary.subject).toContain('CN=Corp Test CA');
    expect(statSync(ca.key).mode & 0o077).toBe(0);

    const leaf = issueCertificate({
      caDir: dir,
      name: 'edge.corp.test',
      sans: ['localhost', '127.0.0.1', 'DNS:sip.corp.test'],
    });
    expect(leaf.cert).toBe(join(dir, 'edge.corp.test.crt'));
    expect(opensslVerify(ca.cert, leaf.cert)).toMatchObject({ status: 0 });
    expect(verifyCertificate(leaf.cert, ca.cert).ok).toBe(true);
    expect(leaf.summary.subjectAltNames).toEqual([
      'DNS:edge.corp.test',
      'DNS:localhost',
      'IP:127.0.0.1',
      'DNS:sip.corp.test',
    ]);
    expect(leaf.summary.isCa).toBe(false);
    expect(leaf.summary.extendedKeyUsage.sort()).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(leaf.summary.daysLeft).toBeGreaterThan(800);
    expect(statSync(leaf.key).mode & 0o077).toBe(0);
  });

  it('issues client-only and RSA certificates into another folder', () => {
    const dir = scratchDir('parley-ca-');
    const ca = createCa({ dir, keyType: 'rsa', days: 30 });
    const out = join(dir, 'issued');
    const client = issueCertificate({
      caDir: dir,
      name: 'bob@corp.test',
      usage: 'client',
      outDir: out,
      keyType: 'rsa',
      days: 10,
    });
    expect(client.cert).toBe(join(out, 'bob@corp.test.crt'));
    expect(client.summary.extendedKeyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(client.summary.subjectAltNames).toEqual(['email:bob@corp.test']);
    expect(client.summary.keyType).toBe('rsa');
    expect(opensslVerify(ca.cert, client.cert).status).toBe(0);
  });

  it('refuses to overwrite without force, and names a missing CA', () => {
    const dir = scratchDir('parley-ca-');
    createCa({ dir });
    expect(() => createCa({ dir })).toThrow(/already exist/);
    const again = createCa({ dir, force: true });
    expect(again.summary.isCa).toBe(true);
    issueCertificate({ caDir: dir, name: 'a.test' });
    expect(() => issueCertificate({ caDir: dir, name: 'a.test' })).toThrow(CertError);
    const missing = (() => {
      try {
        issueCertificate({ caDir: join(dir, 'nope'), name: 'a.test' });
      } catch (err) {
        return err as CertError;
      }
    })();
    expect(missing?.code).toBe('CERT_NOT_FOUND');
    expect(missing?.suggestion).toContain('parley certs create-ca');
  });

  it('a certificate from another CA does not verify', () => {
    const a = scratchDir('parley-ca-');
    const b = scratchDir('parley-ca-');
    createCa({ dir: a });
    createCa({ dir: b });
    const leaf = issueCertificate({ caDir: b, name: 'x.test' });
    expect(opensslVerify(join(a, 'ca.crt'), leaf.cert).status).not.toBe(0);
    expect(verifyCertificate(leaf.cert, join(a, 'ca.crt')).ok).toBe(false);
  });
});

describe('subjectAltNames', () => {
  it('guesses kinds and drops duplicates', () => {
    expect(subjectAltNames('Edge.Test', ['edge.test', '::1', 'URI:sip:edge.test', '*.pool.test'])).toEqual([
      'DNS:edge.test',
      'IP:::1',
      'URI:sip:edge.test',
      'DNS:*.pool.test',
    ]);
  });
  it.each(['bad name', 'IP:300.1.1.1', 'DNS:a,b', 'email:nope'])('rejects %s', (san) => {
    expect(() => subjectAltNames('ok.test', [san])).toThrow(CertError);
  });
});

describe('fixtures/pki', () => {
  it('all test certificates verify against the test CA, the impostor does not', () => {
    for (const name of ['server', 'partner-edge', 'client']) {
      expect(opensslVerify(join(fixtures, 'ca.crt'), join(fixtures, `${name}.crt`)).status).toBe(0);
    }
    expect(opensslVerify(join(fixtures, 'ca.crt'), join(fixtures, 'impostor-edge.crt')).status).not.toBe(0);
    const server = describeCertificate(join(fixtures, 'server.crt'));
    expect(server.subjectAltNames).toEqual(
      expect.arrayContaining(['DNS:edge.parley.test', 'DNS:localhost', 'IP:127.0.0.1']),
    );
    expect(server.daysLeft).toBeGreaterThan(365 * 5);
    expect(describeCertificate(join(fixtures, 'partner-edge.crt')).subjectAltNames).toContain(
      'DNS:edge.partner.test',
    );
  });

  it('work for mutual TLS in Node', async () => {
    const read = (f: string) => readFileSync(join(fixtures, f));
    const server = createServer({
      cert: read('server.crt'),
      key: read('server.key'),
      ca: read('ca.crt'),
      requestCert: true,
      rejectUnauthorized: true,
    });
    const peer = new Promise<string>((res) => {
      server.on('secureConnection', (s: TLSSocket) => {
        res(String(s.getPeerCertificate().subject.CN));
        s.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const client = connect({
      host: '127.0.0.1',
      port,
      servername: 'edge.parley.test',
      ca: read('ca.crt'),
      cert: read('partner-edge.crt'),
      key: read('partner-edge.key'),
    });
    await new Promise<void>((res, rej) => {
      client.once('secureConnect', res);
      client.once('error', rej);
    });
    expect(client.authorized).toBe(true);
    expect(await peer).toBe('edge.partner.test');
    client.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
});
