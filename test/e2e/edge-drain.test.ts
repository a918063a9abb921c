import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDnsServer } from '../support/dns.js';
import type { RawSipClient } from '../support/raw-sip.js';
import { readMetric } from '../support/server.js';
import { type Org, openTls, register, startOrg } from './edge-support.js';

/**
 * An edge's drain (`parley server drain`, or SIGUSR2): /health turns 503 "draining", new
 * connections are refused, every connection is closed, and the drain is over when the last
 * one has closed (Draining in roles/server-shutdown.ts, as for a home server), not at its
 * timeout. A remote user's connection goes first and its home hears of it (the notice
 * leaves through the edge's connection inside, closed after it).
 */
describe('edge: drain', { timeout: 60_000 }, () => {
  let dns: TestDnsServer;
  let org: Org;
  let carol: RawSipClient;

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    // The shortest grace at the home: a binding whose edge connection is announced gone goes 1 s later.
    org = await startOrg('drain', 'server', dns, {}, { registrar: { connectionGraceSeconds: 1 } });
    await org.home.addUser('carol', 'carol-secret');
  });

  afterAll(async () => {
    carol?.close();
    await org?.stop();
    await dns?.close();
  });

  // Within 30 s: a connection inside left open, or dialled again for the notice, would idle
  // for limits.idleTimeoutMs (60 s) and hold the drain that long.
  it('closes every connection, remote users first, and is done when the last one has closed', {
    timeout: 30_000,
  }, async () => {
    carol = await openTls(org.tlsPort, { localAddress: '127.0.0.7' });
    const ok = await register(carol, {
      user: 'carol',
      domain: 'drain.test',
      password: 'carol-secret',
      transport: 'TLS',
    });
    expect(ok.status).toBe(200);
    expect(await readMetric(org.home.server.httpUrl, 'parley_registered_endpoints')).toBe(1);
    const gone = once(carol.socket, 'close');
    // A timeout no test waits for: the drain ends because its connections closed.
    const drained = org.edge.drain(3_600_000);
    await gone;
    await drained;
    // The home heard of carol's going before the edge closed its way inside.
    await expect
      .poll(() => readMetric(org.home.server.httpUrl, 'parley_registered_endpoints'), { timeout: 5000 })
      .toBe(0);
    const health = await fetch(`${org.edge.httpUrl}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'draining', flows: 0 });
    await expect(openTls(org.tlsPort, { localAddress: '127.0.0.7' })).rejects.toThrow();
  });
});
