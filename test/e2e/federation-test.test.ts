import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { migratedDataFolder, serveDataFolder } from '../support/database.js';
import { TestDnsServer } from '../support/dns.js';
import { startTestServer, type TestServer } from '../support/server.js';

const pki = (name: string) => resolve(import.meta.dirname, '../../fixtures/pki', name);

/** A partner's edge: a Parley server on mutual TLS with the partner's certificate. */
function partnerEdge(domain: string, cert: string, ca = 'ca.crt'): Promise<TestServer> {
  return startTestServer({
    domain,
    listen: { tcp: { host: '127.0.0.1', port: 0 }, tls: { host: '127.0.0.1', port: 0 } },
    tls: { cert: pki(`${cert}.crt`), key: pki(`${cert}.key`), ca: pki(ca), requireClientCert: true },
  });
}
const tlsPort = (t: TestServer) => t.server.listening.find((l) => l.transport === 'tls')?.port ?? 0;

/**
 * `parley federation test` against real edges on loopback, with SRV records from a DNS
 * server the test runs: each failure an administrator meets is named at its step.
 */
describe('parley federation test (built CLI)', { timeout: 180_000 }, () => {
  let partner: TestServer;
  let impostor: TestServer;
  let distrustful: TestServer;
  let dns: TestDnsServer;
  let work: string;
  let closedPort: number;
  let store: { close(): Promise<void> } | undefined;
  const probe = async (domain: string) => {
    const { code, output } = await runCli([
      'federation',
      'test',
      domain,
      '-c',
      join(work, 'parley.yaml'),
      '--json',
    ]);
    return { code, result: JSON.parse(output.slice(output.indexOf('{'), output.lastIndexOf('}') + 1)) };
  };
  const step = (result: { steps: Array<{ step: string; ok: boolean; detail: string }> }, name: string) =>
    result.steps.find((s) => s.step === name);

  beforeAll(async () => {
    partner = await partnerEdge('partner.test', 'partner-edge');
    impostor = await partnerEdge('impostor.test', 'impostor-edge');
    // This one trusts only another CA: our certificate means nothing to it.
    distrustful = await partnerEdge('distrustful.test', 'partner-edge', 'untrusted-ca.crt');
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const srv = (domain: string, port: number) => ({
      type: 'SRV' as const,
      name: `_sipfederationtls._tcp.${domain}`,
      priority: 0,
      weight: 0,
      port,
      target: 'localhost',
    });
    dns = await TestDnsServer.start([
      srv('partner.test', tlsPort(partner)),
      srv('impostor.test', tlsPort(impostor)),
      srv('distrustful.test', tlsPort(distrustful)),
      srv('gone.test', closedPort),
    ]);
    work = mkdtempSync(join(tmpdir(), 'parley-fedtest-'));
    writeFileSync(
      join(work, 'parley.yaml'),
      [
        'domain: parley.test',
        `database: { dataDir: ${join(work, 'data')} }`,
        `tls: { cert: ${pki('server.crt')}, key: ${pki('server.key')}, ca: ${pki('ca.crt')} }`,
        `federation: { dnsServers: ['${dns.address}'] }`,
      ].join('\n'),
    );
    // Commands other than init, server start and db migrate never create a store. Served from
    // here, as a running server would, so each command does not start PGlite itself.
    store = await serveDataFolder(migratedDataFolder(join(work, 'data')));
  });

  afterAll(async () => {
    await store?.close();
    await Promise.all([partner?.stop(), impostor?.stop(), distrustful?.stop(), dns?.close()]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('walks to an allowed partner: SRV, TCP, mutual TLS, certificate name, OPTIONS', async () => {
    const before = await probe('partner.test');
    expect(before.code).toBe(0);
    expect(before.result).toMatchObject({ ok: true, allowed: false });
    expect(step(before.result, 'policy')?.detail).toMatch(/not allowed/);
    await runCli(['federation', 'allow', 'add', 'partner.test', '-c', join(work, 'parley.yaml')]);
    const { code, result } = await probe('partner.test');
    expect(code).toBe(0);
    expect(result).toMatchObject({
      ok: true,
      allowed: true,
      target: { host: 'localhost', port: tlsPort(partner) },
    });
    expect(result.steps.map((s: { step: string; ok: boolean }) => `${s.step}:${s.ok}`)).toEqual([
      'policy:true',
      'resolve:true',
      'connect:true',
      'tls:true',
      'certificate:true',
      'options:true',
    ]);
    expect(step(result, 'options')?.detail).toMatch(/200/);
    expect(dns.queries).toContain('_sipfederationtls._tcp.partner.test SRV');
  });

  it('names the failing step: impostor certificate, refused certificate, no SRV, nothing listening', async () => {
    const impostorRun = await probe('impostor.test');
    expect(impostorRun.code).toBe(1);
    expect(step(impostorRun.result, 'tls')).toMatchObject({ ok: false });
    expect(step(impostorRun.result, 'tls')?.detail).toMatch(/not signed by a CA in our bundle/);

    const refused = await probe('distrustful.test');
    expect(refused.code).toBe(1);
    expect(step(refused.result, 'tls')?.detail).toMatch(/refused our certificate/);

    const nosrv = await probe('nosrv.test');
    expect(nosrv.code).toBe(1);
    expect(step(nosrv.result, 'resolve')?.detail).toMatch(
      /no _sipfederationtls\._tcp\.nosrv\.test SRV record/,
    );

    const gone = await probe('gone.test');
    expect(gone.code).toBe(1);
    expect(step(gone.result, 'connect')?.detail).toMatch(/connection refused/);
  });
});
