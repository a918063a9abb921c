import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { TestDnsServer } from '../support/dns.js';
import { TestClient } from '../support/jssip.js';
import type { RawSipClient } from '../support/raw-sip.js';
import { readMetric } from '../support/server.js';
import {
  answer,
  nextRequest,
  type Org,
  openTls,
  pki,
  register,
  sendMessage,
  signInInside,
  startOrg,
} from './edge-support.js';

// JsSIP opens `new WebSocket(url, 'sip')`: give it one that trusts the test CA.
const ca = readFileSync(pki('ca.crt'));
(globalThis as unknown as { WebSocket: unknown }).WebSocket = class extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols, { ca });
  }
};

/**
 * Remote users of parley.test sign in through its edge over TLS (a raw client with its own
 * digest) and WSS (JsSIP), and chat with a user inside; what they receive names nothing
 * inside; a flood from one address is cut without hurting the others.
 */
describe('edge: remote users', { timeout: 120_000 }, () => {
  let dns: TestDnsServer;
  let org: Org;
  let alice: RawSipClient;
  let carol: RawSipClient;
  const hidden = () => [org.home.tcpPort, org.internalPort, alice.localPort].map((p) => `:${p}`);

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    org = await startOrg('parley', 'server', dns, {
      edge: { unknownRequestsPerSecond: 5, requestsPerSecond: 50, burst: 100 },
    });
    for (const user of ['alice', 'carol', 'dave']) await org.home.addUser(user, `${user}-secret`);
    alice = await signInInside(org.home.tcpPort, 'alice', 'parley.test', '127.0.0.2');
  });

  afterAll(async () => {
    alice?.close();
    carol?.close();
    await org?.stop();
    await dns?.close();
  });

  it('signs a remote user in over TLS with digest end to end; the 200 shows nothing inside', async () => {
    carol = await openTls(org.tlsPort, { localAddress: '127.0.0.4' });
    const ok = await register(carol, {
      user: 'carol',
      domain: 'parley.test',
      password: 'carol-secret',
      transport: 'TLS',
      contactHost: 'carol.invalid',
    });
    expect(ok.status).toBe(200);
    expect(ok.header('path')).toBeUndefined();
    expect(ok.headers('via')).toHaveLength(1);
    expect(ok.header('contact')).toMatch(/carol@carol\.invalid/);
    for (const h of hidden()) expect(ok.head).not.toContain(h);
  });

  it('refuses a wrong password (the home challenges again) and never caches the edge connection as signed in', async () => {
    const mallory = await openTls(org.tlsPort, { localAddress: '127.0.0.5' });
    const wrong = await register(mallory, {
      user: 'carol',
      domain: 'parley.test',
      password: 'guess',
      transport: 'TLS',
      contactHost: 'mallory.invalid',
    });
    expect(wrong.status).toBe(401);
    // Carol is signed in through the same edge connection to the home; Mallory still gets challenged.
    sendMessage(mallory, {
      from: 'carol@parley.test',
      to: 'alice@parley.test',
      body: 'as carol',
      transport: 'TLS',
    });
    const challenged = await mallory.response(5000);
    expect(challenged.status).toBe(407);
    expect(await alice.silent(300)).toBe(true);
    mallory.close();
  });

  it('a remote user and an inside user chat through the edge; the remote side sees only the edge', async () => {
    sendMessage(carol, {
      from: 'carol@parley.test',
      to: 'alice@parley.test',
      body: 'from outside',
      transport: 'TLS',
    });
    const inside = await nextRequest(alice);
    expect(inside.body).toBe('from outside');
    // The client's address is for the home's authenticator only.
    expect(inside.head).not.toMatch(/^p-parley-client:/im);
    answer(alice, inside);
    expect((await carol.response(5000)).status).toBe(200);

    sendMessage(alice, {
      from: 'alice@parley.test',
      to: 'carol@parley.test',
      body: 'from inside',
      transport: 'TCP',
    });
    const outside = await nextRequest(carol);
    expect(outside.body).toBe('from inside');
    expect(outside.headers('via')).toHaveLength(1);
    expect(outside.head).not.toMatch(/^route:|^p-asserted-identity:|^p-parley-client:/im);
    for (const h of hidden()) expect(outside.head).not.toContain(h);
    answer(carol, outside);
    expect((await alice.response(5000)).status).toBe(200);
  });

  it('JsSIP over WSS signs in through the edge, chats and watches presence', async () => {
    const dave = await TestClient.signIn(
      `wss://127.0.0.1:${org.wssPort}`,
      'dave',
      'parley.test',
      'dave-secret',
    );
    try {
      const sent = dave.sendMessage('alice@parley.test', 'dave via wss');
      const got = await nextRequest(alice);
      expect(got.body).toBe('dave via wss');
      answer(alice, got);
      await sent;
      const waiting = dave.nextMessage();
      sendMessage(alice, {
        from: 'alice@parley.test',
        to: 'dave@parley.test',
        body: 'hi dave',
        transport: 'TCP',
      });
      expect((await waiting).body).toBe('hi dave');
      expect((await alice.response(5000)).status).toBe(200);
      // Same organisation: allowed by default; the NOTIFY comes back through the edge.
      const watch = dave.watch('alice@parley.test');
      const first = await watch.until((n) => n.state.startsWith('active'), 8000);
      expect(first.state).toMatch(/^active/);
    } finally {
      await dave.stop();
    }
  });

  it('limits a flood from one address without hurting a signed-in user', async () => {
    const flooder = await openTls(org.tlsPort, { localAddress: '127.0.0.9' });
    for (let i = 0; i < 60; i++) {
      flooder.send(
        [
          'OPTIONS sip:parley.test SIP/2.0',
          `Via: SIP/2.0/TLS 127.0.0.9:${flooder.localPort};branch=z9hG4bKflood${i}`,
          'Max-Forwards: 70',
          `From: <sip:x@parley.test>;tag=f${i}`,
          'To: <sip:parley.test>',
          `Call-ID: flood${i}`,
          `CSeq: ${i + 1} OPTIONS`,
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
    }
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await flooder.response(5000)).status ?? 0);
    const limited = statuses.filter((s) => s === 503).length;
    expect(limited).toBeGreaterThanOrEqual(40);
    expect(await readMetric(org.edge.httpUrl, 'parley_edge_refusals_total', { reason: 'rate_address' })).toBe(
      limited,
    );
    flooder.close();
    // Carol, from her own address, is not affected.
    sendMessage(carol, {
      from: 'carol@parley.test',
      to: 'alice@parley.test',
      body: 'still here',
      transport: 'TLS',
    });
    const got = await nextRequest(alice);
    expect(got.body).toBe('still here');
    answer(alice, got);
    expect((await carol.response(5000)).status).toBe(200);
  });

  it('refuses a message larger than edge.maxMessageSize from outside', async () => {
    const big = await openTls(org.tlsPort, { localAddress: '127.0.0.6' });
    sendMessage(big, {
      from: 'x@parley.test',
      to: 'alice@parley.test',
      body: 'x'.repeat(20_000),
      transport: 'TLS',
    });
    const r = await big.response(5000).catch(() => undefined);
    if (r) expect(r.status).toBe(413);
    expect(await readMetric(org.edge.httpUrl, 'parley_edge_refusals_total', { reason: 'too_large' })).toBe(1);
    big.close();
  });
});
