import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/ops/config.js';
import { silentLogger } from '../../src/ops/log.js';
import { type ParleyServer, startServer } from '../../src/roles/server.js';
import { HomeRepository } from '../../src/store/homes.js';
import { UserRepository } from '../../src/store/users.js';
import { TestDnsServer } from '../support/dns.js';
import { freePort } from '../support/ports.js';
import { fresh, type RawMessage, type RawSipClient } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { answer, nextRequest, openTls, pki, register, sendMessage, signInInside } from './edge-support.js';

/**
 * The deployment docs/edge.md draws: edge -> director -> home. The edge's next hop is a
 * director, which proxies the edge's REGISTERs (a trusted peer) to the user's home instead
 * of redirecting; the home challenges end to end. Each server has its own embedded store here
 * (one embedded store serves one server); the director knows the users (no credentials) and its placement names the home. Inside clients connect from 127.0.0.2 (127.0.0.1 is the edge and director).
 */
describe('edge -> director -> home', { timeout: 120_000 }, () => {
  let dns: TestDnsServer;
  let home: TestServer;
  let director: ParleyServer;
  let edge: ParleyServer;
  let directorDir: string;
  let edgeDir: string;
  let alice: RawSipClient;
  let carol: RawSipClient;
  let internalPort: number;
  let directorPort: number;
  const tlsPort = () => edge.listening.find((l) => l.transport === 'tls' && !l.name)?.port ?? 0;
  const hidden = () => [home.tcpPort, internalPort, directorPort].map((p) => `:${p}`);

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    internalPort = await freePort();
    home = await startTestServer({
      domain: 'parley.test',
      serverId: 'home1',
      trustedPeers: ['127.0.0.1'],
      federation: { edge: `sip:127.0.0.1:${internalPort};transport=tcp` },
    });
    for (const user of ['alice', 'carol']) await home.addUser(user, `${user}-secret`);
    directorDir = mkdtempSync(join(tmpdir(), 'edge2-director-'));
    director = await startServer(
      loadConfig({
        cwd: directorDir,
        env: {},
        overrides: {
          domain: 'parley.test',
          role: 'director',
          serverId: 'director1',
          trustedPeers: ['127.0.0.1'],
          listen: { tcp: { host: '127.0.0.1', port: 0 } },
          http: { host: '127.0.0.1', port: 0 },
          database: { dataDir: directorDir },
          log: { level: 'warn' },
        },
      }),
      { log: process.env.PARLEY_TEST_LOG ? undefined : silentLogger() },
    );
    // The director's placement names the home (a deployment keeps both in one store).
    const homes = new HomeRepository(director.db);
    await homes.upsertHome({
      name: 'home1',
      kind: 'standard',
      address: `sip:127.0.0.1:${home.tcpPort};transport=tcp`,
    });
    const users = new UserRepository(director.db);
    for (const user of ['alice', 'carol']) {
      await users.createUser({ aor: `${user}@parley.test`, displayName: user });
      await homes.setPlacement(`${user}@parley.test`, 'home1');
    }
    directorPort = director.listening.find((l) => l.transport === 'tcp')?.port ?? 0;
    edgeDir = mkdtempSync(join(tmpdir(), 'edge2-edge-'));
    edge = await startServer(
      loadConfig({
        cwd: edgeDir,
        env: {},
        overrides: {
          domain: 'parley.test',
          role: 'edge',
          serverId: 'edge1',
          listen: {
            tls: { host: '127.0.0.1', port: 0 },
            internal: { host: '127.0.0.1', port: internalPort },
          },
          tls: { cert: pki('server.crt'), key: pki('server.key'), ca: pki('ca.crt') },
          federation: { dnsServers: [dns.address] },
          http: { host: '127.0.0.1', port: 0 },
          database: { dataDir: edgeDir },
          log: { level: 'warn' },
          edge: { next: `sip:127.0.0.1:${directorPort};transport=tcp` },
        },
      }),
      { log: process.env.PARLEY_TEST_LOG ? undefined : silentLogger() },
    );
    alice = await signInInside(home.tcpPort, 'alice', 'parley.test', '127.0.0.2');
  });

  afterAll(async () => {
    alice?.close();
    carol?.close();
    await edge?.close();
    await director?.close();
    await home?.stop();
    await dns?.close();
    for (const dir of [directorDir, edgeDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('signs a remote user in through the director, which proxies to the home instead of redirecting', async () => {
    carol = await openTls(tlsPort(), { localAddress: '127.0.0.4' });
    const ok = await register(carol, {
      user: 'carol',
      domain: 'parley.test',
      password: 'carol-secret',
      transport: 'TLS',
      contactHost: 'carol.invalid',
    });
    expect(ok.status).toBe(200);
    expect(ok.header('contact')).toMatch(/carol@carol\.invalid/);
    expect(ok.headers('via')).toHaveLength(1);
    expect(ok.header('path')).toBeUndefined();
    for (const h of hidden()) expect(ok.head).not.toContain(h);
  });

  it('refuses a wrong password through the director (the home challenges again)', async () => {
    const mallory = await openTls(tlsPort(), { localAddress: '127.0.0.5' });
    const wrong = await register(mallory, {
      user: 'carol',
      domain: 'parley.test',
      password: 'guess',
      transport: 'TLS',
      contactHost: 'mallory.invalid',
    });
    expect(wrong.status).toBe(401);
    mallory.close();
  });

  it('the remote user and an inside user of the home chat both ways', async () => {
    sendMessage(carol, {
      from: 'carol@parley.test',
      to: 'alice@parley.test',
      body: 'from outside, via the director',
      transport: 'TLS',
    });
    const inside = await nextRequest(alice);
    expect(inside.body).toBe('from outside, via the director');
    answer(alice, inside);
    const delivered = await carol.response(5000);
    expect(delivered.status).toBe(200);
    for (const h of hidden()) expect(delivered.head).not.toContain(h);

    sendMessage(alice, {
      from: 'alice@parley.test',
      to: 'carol@parley.test',
      body: 'from inside',
      transport: 'TCP',
    });
    const outside = await nextRequest(carol);
    expect(outside.body).toBe('from inside');
    expect(outside.headers('via')).toHaveLength(1);
    for (const h of hidden()) expect(outside.head).not.toContain(h);
    answer(carol, outside);
    expect((await alice.response(5000)).status).toBe(200);
  });

  it('the remote user watches an inside user: the NOTIFY and an in-dialog refresh cross the director', async () => {
    const callId = fresh('sub');
    const tag = fresh('t');
    const subscribe = (cseq: number, route: string[], to: string, uri: string) =>
      carol.send(
        [
          `SUBSCRIBE ${uri} SIP/2.0`,
          `Via: SIP/2.0/TLS carol.invalid;branch=${fresh('z9hG4bK')};rport`,
          'Max-Forwards: 70',
          ...route.map((r) => `Route: ${r}`),
          `From: <sip:carol@parley.test>;tag=${tag}`,
          `To: ${to}`,
          `Call-ID: ${callId}`,
          `CSeq: ${cseq} SUBSCRIBE`,
          'Contact: <sip:carol@carol.invalid;transport=tls>',
          'Event: presence',
          'Accept: application/pidf+xml',
          'Expires: 600',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
    subscribe(1, [], '<sip:alice@parley.test>', 'sip:alice@parley.test');
    let ok: RawMessage | undefined;
    let notify: RawMessage | undefined;
    while (!ok || !notify) {
      const m = await carol.next(8000);
      if (m.method === 'NOTIFY') {
        notify = m;
        answer(carol, m);
      } else if (m.status !== undefined && m.status >= 200) ok = m;
    }
    expect(ok.status).toBeLessThan(300);
    expect(notify.header('subscription-state')).toMatch(/^active/);
    for (const h of hidden()) {
      expect(ok.head).not.toContain(h);
      expect(notify.head).not.toContain(h);
    }
    // RFC 3261 12.1.2: the route set is the 2xx's Record-Route reversed; the remote target its Contact.
    const routes = ok.headers('record-route').flatMap((v) => v.split(/,(?=\s*<)/).map((r) => r.trim()));
    expect(routes).toHaveLength(1);
    const target = /<([^>]+)>/.exec(ok.header('contact') ?? '')?.[1] ?? '';
    subscribe(2, routes.reverse(), ok.header('to') ?? '', target);
    let refreshed: RawMessage | undefined;
    while (!refreshed) {
      const m = await carol.next(8000);
      if (m.method === 'NOTIFY') answer(carol, m);
      else if (m.status !== undefined && m.status >= 200) refreshed = m;
    }
    expect(refreshed.status).toBeLessThan(300);
  });
});
