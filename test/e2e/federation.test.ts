import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCertificate } from '../../src/certs/pki.js';
import { TestDnsServer } from '../support/dns.js';
import { fresh, type RawMessage, type RawSipClient } from '../support/raw-sip.js';
import { readMetric } from '../support/server.js';
import {
  allow,
  answer,
  nextRequest,
  type Org,
  openTls,
  pki,
  sendMessage,
  settle,
  signInInside,
  startOrg,
} from './edge-support.js';

/**
 * Two organisations on loopback, parley.test and partner.test, each a home and an edge with
 * its own certificate; SRV records from a DNS server the test runs. Clients inside connect
 * to their home from 127.0.0.2 / 127.0.0.3 (127.0.0.1 is the edge the homes trust).
 */
describe('federation through two edges', { timeout: 120_000 }, () => {
  let dns: TestDnsServer;
  let a: Org;
  let b: Org;
  let alice: RawSipClient;
  let bob: RawSipClient;

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    a = await startOrg('parley', 'server', dns);
    b = await startOrg('partner', 'partner-edge', dns);
    dns.zone.push(
      {
        type: 'SRV',
        name: '_sipfederationtls._tcp.parley.test',
        priority: 0,
        weight: 0,
        port: a.federationPort,
        target: 'edge.parley.test',
      },
      { type: 'A', name: 'edge.parley.test', address: '127.0.0.1' },
      {
        type: 'SRV',
        name: '_sipfederationtls._tcp.partner.test',
        priority: 0,
        weight: 0,
        port: b.federationPort,
        target: 'edge.partner.test',
      },
      { type: 'A', name: 'edge.partner.test', address: '127.0.0.1' },
    );
    await a.home.addUser('alice', 'alice-secret');
    await b.home.addUser('bob', 'bob-secret');
    alice = await signInInside(a.home.tcpPort, 'alice', 'parley.test', '127.0.0.2');
    bob = await signInInside(b.home.tcpPort, 'bob', 'partner.test', '127.0.0.3');
  });

  afterAll(async () => {
    alice?.close();
    bob?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await dns?.close();
  });

  it('is closed by default: a MESSAGE to the partner is refused with a Warning, counted', async () => {
    sendMessage(alice, {
      from: 'alice@parley.test',
      to: 'bob@partner.test',
      body: 'hello?',
      transport: 'TCP',
    });
    const r = await alice.response(5000);
    expect(r.status).toBe(403);
    expect(r.header('warning')).toMatch(/^399 .* "federation with partner\.test is not allowed"$/);
    expect(await readMetric(a.edge.httpUrl, 'parley_edge_refusals_total', { reason: 'not_allowed' })).toBe(1);
  });

  it('an allowed partner exchanges IM through both edges over mutual TLS, nothing of the inside showing', async () => {
    await allow(a, 'partner.test');
    await allow(b, 'parley.test');
    sendMessage(alice, {
      from: 'alice@parley.test',
      to: 'bob@partner.test',
      body: 'hello bob',
      transport: 'TCP',
    });
    const got = await nextRequest(bob);
    expect(got.method).toBe('MESSAGE');
    expect(got.body).toBe('hello bob');
    expect(got.header('from')).toMatch(/alice@parley\.test/);
    // Org A's home, its edge's inside listener and Alice's own connection are invisible.
    for (const hidden of [a.home.tcpPort, a.internalPort, alice.localPort])
      expect(got.head).not.toContain(`:${hidden}`);
    expect(got.head).not.toMatch(/p-asserted-identity/i);
    answer(bob, got);
    expect((await alice.response(5000)).status).toBe(200);

    sendMessage(bob, {
      from: 'bob@partner.test',
      to: 'alice@parley.test',
      body: 'hi alice',
      transport: 'TCP',
    });
    const back = await nextRequest(alice);
    expect(back.body).toBe('hi alice');
    for (const hidden of [b.home.tcpPort, b.internalPort, bob.localPort])
      expect(back.head).not.toContain(`:${hidden}`);
    answer(alice, back);
    expect((await bob.response(5000)).status).toBe(200);
  });

  it('refuses an impostor certificate, a certificate naming another edge, a blocked and an unlisted domain', async () => {
    // Signed by a CA nobody trusts: the edge ends the handshake (TLS 1.3 says so after the
    // client's Finished, so the client sees its connection closed, never a SIP answer).
    const impostor = await openTls(a.federationPort, { cert: 'impostor-edge' }).catch(() => undefined);
    if (impostor) {
      sendMessage(impostor, {
        from: 'bob@partner.test',
        to: 'alice@parley.test',
        body: 'x',
        transport: 'TLS',
      });
      await expect(impostor.response(3000)).rejects.toThrow(/connection closed/);
    }
    const probe = async (cert: string, from: string) => {
      const c = await openTls(a.federationPort, { cert });
      sendMessage(c, { from, to: 'alice@parley.test', body: 'x', transport: 'TLS' });
      const r = await c.response(5000).catch(() => undefined);
      c.close();
      return r;
    };
    // A valid certificate of our CA, but not partner.test's edge (SRV names edge.partner.test).
    const wrongEdge = await probe('server', 'mallory@partner.test');
    expect(wrongEdge?.status).toBe(403);
    expect(wrongEdge?.header('warning')).toMatch(/does not name partner\.test's edge/);
    await a.federation.put({ domain: 'spam.test', action: 'block' });
    await settle();
    const blocked = await probe('partner-edge', 'x@spam.test');
    expect(blocked?.status).toBe(403);
    expect(blocked?.header('warning')).toMatch(/blocked/);
    const unlisted = await probe('partner-edge', 'x@unlisted.test');
    expect(unlisted?.status).toBe(403);
    expect(unlisted?.header('warning')).toMatch(/not allowed/);
    for (const reason of ['certificate', 'blocked']) {
      expect(
        await readMetric(a.edge.httpUrl, 'parley_edge_refusals_total', { reason }),
      ).toBeGreaterThanOrEqual(1);
    }
  });

  it('an allow-list change reaches the running edges within a second', async () => {
    await a.federation.remove('partner.test', 'allow');
    await settle(1000);
    sendMessage(bob, {
      from: 'bob@partner.test',
      to: 'alice@parley.test',
      body: 'still there?',
      transport: 'TCP',
    });
    const refused = await bob.response(5000);
    expect(refused.status).toBe(403);
    expect(refused.header('warning')).toMatch(/parley\.test|not allowed/);
    await a.federation.put({ domain: 'partner.test', action: 'allow' });
    await settle(1000);
    sendMessage(bob, { from: 'bob@partner.test', to: 'alice@parley.test', body: 'back', transport: 'TCP' });
    const got = await nextRequest(alice);
    expect(got.body).toBe('back');
    answer(alice, got);
    expect((await bob.response(5000)).status).toBe(200);
  });

  it('presence across organisations: an external watcher is pending, never allowed by default', async () => {
    const callId = fresh('sub');
    bob.send(
      [
        'SUBSCRIBE sip:alice@parley.test SIP/2.0',
        `Via: SIP/2.0/TCP 127.0.0.3:${bob.localPort};branch=${fresh('z9hG4bK')};rport`,
        'Max-Forwards: 70',
        `From: <sip:bob@partner.test>;tag=${fresh('t')}`,
        'To: <sip:alice@parley.test>',
        `Call-ID: ${callId}`,
        'CSeq: 1 SUBSCRIBE',
        `Contact: <sip:bob@127.0.0.3:${bob.localPort};transport=tcp>`,
        'Event: presence',
        'Accept: application/pidf+xml',
        'Expires: 600',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    let accepted: RawMessage | undefined;
    let notify: RawMessage | undefined;
    while (!accepted || !notify) {
      const m = await bob.next(8000);
      if (m.method === 'NOTIFY') {
        notify = m;
        answer(bob, m);
      } else if (m.status !== undefined && m.status >= 200) accepted = m;
    }
    expect(accepted.status).toBeLessThan(300);
    expect(notify.header('subscription-state')).toMatch(/^pending/);
    expect(notify.body).toBe('');
    for (const hidden of [a.home.tcpPort, a.internalPort]) expect(notify.head).not.toContain(`:${hidden}`);
  });

  it('reaches a partner without an SRV record through the clearinghouse, accepted from its certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edge-ch-'));
    try {
      const files = issueCertificate({
        caDir: pki(''),
        name: 'ch.clearinghouse.test',
        sans: ['127.0.0.1'],
        usage: 'both',
        outDir: dir,
      });
      const tlsFiles = {
        cert: readFileSync(files.cert),
        key: readFileSync(files.key),
        ca: readFileSync(pki('ca.crt')),
      };
      let relayed = 0;
      const sockets: TLSSocket[] = [];
      // The clearinghouse: takes mutual TLS from one edge and relays to the other with its own certificate.
      const ch = createTlsServer(
        { ...tlsFiles, requestCert: true, rejectUnauthorized: true },
        (inbound: TLSSocket) => {
          relayed++;
          const out = tlsConnect({
            ...tlsFiles,
            host: '127.0.0.1',
            port: b.federationPort,
            servername: 'edge.partner.test',
          });
          sockets.push(inbound, out);
          inbound.pipe(out).pipe(inbound);
          inbound.on('error', () => out.destroy());
          out.on('error', () => inbound.destroy());
        },
      );
      await new Promise<void>((r) => ch.listen(0, '127.0.0.1', () => r()));
      const chPort = (ch.address() as { port: number }).port;
      const srvAt = dns.zone.findIndex((r) => r.name === '_sipfederationtls._tcp.partner.test');
      const [partnerSrv] = dns.zone.splice(srvAt, 1);
      dns.zone.push(
        {
          type: 'SRV',
          name: '_sips._tcp.ch.clearinghouse.test',
          priority: 0,
          weight: 0,
          port: chPort,
          target: 'ch.clearinghouse.test',
        },
        { type: 'A', name: 'ch.clearinghouse.test', address: '127.0.0.1' },
      );
      await a.federation.setClearinghouse('ch.clearinghouse.test');
      await b.federation.setClearinghouse('ch.clearinghouse.test');
      await settle();
      try {
        sendMessage(alice, {
          from: 'alice@parley.test',
          to: 'bob@partner.test',
          body: 'via the clearinghouse',
          transport: 'TCP',
        });
        const got = await nextRequest(bob);
        expect(got.body).toBe('via the clearinghouse');
        answer(bob, got);
        expect((await alice.response(5000)).status).toBe(200);
        expect(relayed).toBe(1);
      } finally {
        dns.zone.push(partnerSrv);
        await a.federation.clearClearinghouse();
        await b.federation.clearClearinghouse();
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((r) => ch.close(() => r()));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers 502 when the partner edge cannot be reached', async () => {
    await allow(a, 'gone.test');
    dns.zone.push({
      type: 'SRV',
      name: '_sipfederationtls._tcp.gone.test',
      priority: 0,
      weight: 0,
      port: 1,
      target: 'edge.gone.test',
    });
    sendMessage(alice, { from: 'alice@parley.test', to: 'x@gone.test', body: 'anyone?', transport: 'TCP' });
    const r = await alice.response(15_000);
    expect(r.status).toBe(502);
  });
});
