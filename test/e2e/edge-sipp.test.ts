import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDnsServer } from '../support/dns.js';
import { freePort } from '../support/ports.js';
import {
  injectionFile,
  runSipp,
  SIPP_SCENARIOS,
  type SippUser,
  startSippUas,
  startTlsTunnel,
  type TlsTunnel,
} from '../support/sipp.js';
import { type Org, pki, startOrg } from './edge-support.js';

const scenario = (name: string) => join(SIPP_SCENARIOS, name);

/**
 * Real SIPp as remote users over TLS through the edge: REGISTER with digest (the home
 * challenges end to end) and MESSAGE to a user inside. Debian's SIPp has no TLS, so it
 * speaks TCP to a socat tunnel that opens the TLS connection (startTlsTunnel).
 */
describe('SIPp over TLS through the edge', { timeout: 120_000 }, () => {
  let dns: TestDnsServer;
  let org: Org;
  let tunnel: TlsTunnel;
  const user = (name: string, extra?: string): SippUser => ({
    user: name,
    password: 'secret',
    domain: 'parley.test',
    extra,
  });

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    // SIPp's users share one address (the tunnel's): the per-address limits are raised.
    org = await startOrg('parley', 'server', dns, {
      edge: { unknownRequestsPerSecond: 500, requestsPerSecond: 1000, burst: 2000 },
    });
    for (let i = 0; i < 20; i++) await org.home.addUser(`user${i}`, 'secret');
    await org.home.addUser('alice', 'secret');
    await org.home.addUser('bob', 'secret');
    tunnel = await startTlsTunnel(
      { host: '127.0.0.1', port: org.tlsPort, name: 'edge.parley.test' },
      { ca: pki('ca.crt') },
    );
  });

  afterAll(async () => {
    tunnel?.stop();
    await org?.stop();
    await dns?.close();
  });

  async function sipp(
    name: string,
    users: SippUser[],
    calls: number,
    opts: { port?: number; localIp?: string; rate?: number } = {},
  ): Promise<void> {
    const run = await runSipp([
      `127.0.0.1:${opts.port ?? tunnel.port}`,
      ...['-sf', scenario(name), '-inf', injectionFile(users), '-t', 't1', '-m', String(calls)],
      ...(opts.localIp ? ['-i', opts.localIp] : []),
      ...(opts.rate ? ['-r', String(opts.rate)] : []),
      ...['-timeout', '20s', '-timeout_error'],
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  }

  it('registers 20 users with digest through the edge over TLS', async () => {
    await sipp(
      'register-auth.xml',
      Array.from({ length: 20 }, (_, i) => user(`user${i}`)),
      20,
      { rate: 100 },
    );
    const health = (await (await fetch(`${org.home.server.httpUrl}/health`)).json()) as {
      signedInUsers: number;
    };
    expect(health.signedInUsers).toBeGreaterThanOrEqual(20);
  });

  it('delivers MESSAGE from a remote SIPp over TLS to a SIPp inside', async () => {
    // Bob inside, from 127.0.0.2 (127.0.0.1 is the edge the home trusts), with a UAS there.
    const uasPort = await freePort();
    const uas = startSippUas(scenario('uas-message.xml'), uasPort, 50, '127.0.0.2');
    try {
      await new Promise((r) => setTimeout(r, 300));
      await sipp('register-contact.xml', [user('bob', `127.0.0.2:${uasPort}`)], 1, {
        port: org.home.tcpPort,
        localIp: '127.0.0.2',
      });
      // Alice over TLS through the edge: the first MESSAGE is challenged (407) by the home.
      await sipp('uac-message.xml', [user('alice', 'bob')], 50, { rate: 200 });
      expect(await uas.exited).toBe(0);
    } finally {
      uas.stop();
    }
  });
});
