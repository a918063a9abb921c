import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDnsServer } from '../support/dns.js';
import type { RawSipClient } from '../support/raw-sip.js';
import { type Org, openTls, startOrg } from './edge-support.js';

/**
 * An edge's drain (`parley server drain`, or a stop): /health turns 503 "draining", new
 * connections are refused, every connection is closed, and the drain is over when the last
 * one has closed (Draining in roles/server-shutdown.ts, as for a home server), not at its timeout.
 */
describe('edge: drain', { timeout: 60_000 }, () => {
  let dns: TestDnsServer;
  let org: Org;
  let remote: RawSipClient;

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    org = await startOrg('drain', 'server', dns);
  });

  afterAll(async () => {
    remote?.close();
    await org?.stop();
    await dns?.close();
  });

  it('closes every connection and is done when the last one has closed', async () => {
    remote = await openTls(org.tlsPort, { localAddress: '127.0.0.7' });
    remote.send(
      [
        'OPTIONS sip:drain.test SIP/2.0',
        `Via: SIP/2.0/TLS 127.0.0.7:${remote.localPort};branch=z9hG4bKdrain1`,
        'Max-Forwards: 70',
        'From: <sip:x@drain.test>;tag=d1',
        'To: <sip:drain.test>',
        'Call-ID: drain1',
        'CSeq: 1 OPTIONS',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    // Answered: the connection is one of the edge's flows (and the edge has one to its home).
    expect((await remote.response(5000)).status).toBe(200);
    const gone = once(remote.socket, 'close');
    // A timeout no test waits for: the drain ends because its connections closed.
    const drained = org.edge.drain(3_600_000);
    await gone;
    await drained;
    const health = await fetch(`${org.edge.httpUrl}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'draining', flows: 0 });
    await expect(openTls(org.tlsPort, { localAddress: '127.0.0.7' })).rejects.toThrow();
  });
});
