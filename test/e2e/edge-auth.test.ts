import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDnsServer } from '../support/dns.js';
import { digestAnswer, fresh, type RawMessage, RawSipClient } from '../support/raw-sip.js';
import { type Org, openTls, register, startOrg } from './edge-support.js';

/**
 * The home's password-guessing limits behind an edge: the edge passes on each client's
 * address (P-Parley-Client, believed from trustedPeers only), so `auth.addressMaxFailures`
 * locks one guessing address out, not every remote user.
 */
describe('edge: guessing limits count each remote client', { timeout: 120_000 }, () => {
  let dns: TestDnsServer;
  let org: Org;

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    org = await startOrg(
      'parley',
      'server',
      dns,
      { edge: { unknownRequestsPerSecond: 50 } },
      { auth: { addressMaxFailures: 3, lockoutSeconds: 60 } },
    );
    for (const user of ['carol', 'dave']) await org.home.addUser(user, `${user}-secret`);
  });

  afterAll(async () => {
    await org?.stop();
    await dns?.close();
  });

  const guess = (c: RawSipClient, user: string, localAddress: string) =>
    register(c, {
      user,
      domain: 'parley.test',
      password: 'guess',
      transport: 'TLS',
      contactHost: `${localAddress.replaceAll('.', '-')}.invalid`,
    });

  it('locks out one remote guesser while another remote user signs in through the same edge', async () => {
    const mallory = await openTls(org.tlsPort, { localAddress: '127.0.0.5' });
    // Three users, one guess each: no pair is over its limit, the address is.
    for (const user of ['carol', 'dave', 'nobody'])
      expect((await guess(mallory, user, '127.0.0.5')).status).toBe(401);
    const locked = await guess(mallory, 'carol', '127.0.0.5');
    expect(locked.status).toBe(403);
    expect(locked.startLine).toMatch(/too many failed attempts/);
    // Even with the right password, from that address.
    const right = await register(mallory, {
      user: 'dave',
      domain: 'parley.test',
      password: 'dave-secret',
      transport: 'TLS',
      contactHost: 'mallory.invalid',
    });
    expect(right.status).toBe(403);
    mallory.close();

    // Carol, from her own address, through the same edge and its one connection to the home.
    const carol = await openTls(org.tlsPort, { localAddress: '127.0.0.4' });
    const ok = await register(carol, {
      user: 'carol',
      domain: 'parley.test',
      password: 'carol-secret',
      transport: 'TLS',
      contactHost: 'carol.invalid',
    });
    expect(ok.status).toBe(200);
    carol.close();
  });

  it('ignores a client address a remote client writes itself, and one sent straight to the home', async () => {
    // The guesser names another address: the edge replaces it with the real one, still locked.
    const mallory = await openTls(org.tlsPort, { localAddress: '127.0.0.5' });
    const again = await registerWith(mallory, 'TLS', 'dave', 'guess', 'P-Parley-Client: 127.0.0.77');
    expect(again.status).toBe(403);
    mallory.close();

    // An inside client (not a trusted peer) cannot pick the address its guesses count against.
    const inside = await RawSipClient.open(org.home.tcpPort, '127.0.0.1', '127.0.0.2');
    for (let i = 0; i < 3; i++)
      expect(
        (await registerWith(inside, 'TCP', `x${i}`, 'guess', `P-Parley-Client: 127.0.0.${10 + i}`)).status,
      ).toBe(401);
    expect((await registerWith(inside, 'TCP', 'x9', 'guess', 'P-Parley-Client: 127.0.0.99')).status).toBe(
      403,
    );
    inside.close();
  });
});

/** REGISTER answered with a digest, an extra header on both requests. */
async function registerWith(
  c: RawSipClient,
  transport: 'TCP' | 'TLS',
  user: string,
  password: string,
  extra: string,
): Promise<RawMessage> {
  const callId = fresh('reg');
  const send = (cseq: number, auth?: string) =>
    c.send(
      [
        'REGISTER sip:parley.test SIP/2.0',
        `Via: SIP/2.0/${transport} client.invalid;branch=${fresh('z9hG4bK')};rport`,
        'Max-Forwards: 70',
        `From: <sip:${user}@parley.test>;tag=${callId}`,
        `To: <sip:${user}@parley.test>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} REGISTER`,
        `Contact: <sip:${user}@client.invalid;transport=${transport.toLowerCase()}>`,
        extra,
        ...(auth ? [`Authorization: ${auth}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
  send(1);
  let r = await c.response(5000);
  if (r.status === 401) {
    send(
      2,
      digestAnswer(r.header('www-authenticate') ?? '', {
        user,
        password,
        method: 'REGISTER',
        uri: 'sip:parley.test',
      }),
    );
    r = await c.response(5000);
  }
  return r;
}
