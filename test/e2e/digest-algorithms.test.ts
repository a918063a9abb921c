import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestAnswer, fresh, RawSipClient } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

const DOMAIN = 'example.com';

/**
 * The authenticator looks only at answers in an algorithm it offered (RFC 8760 2.4): a standard
 * server offers MD5 alone by default, so an answer in SHA-512-256, in SHA-256 (stored, but not
 * offered) or in a made-up algorithm gets a fresh challenge and a warn line, for REGISTER (401)
 * and for proxied requests (407) alike; an MD5 answer to the same server passes.
 */
describe('digest answers in algorithms the server did not offer, over raw TCP', () => {
  let srv: TestServer;
  let port: number;
  let httpUrl: string;
  const logLines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    srv = await startTestServer({ domain: DOMAIN }, { logLines });
    port = srv.tcpPort;
    httpUrl = srv.server.httpUrl;
    for (const name of ['alice', 'bob']) await srv.addUser(name, 'secret');
  });
  afterAll(async () => {
    await srv?.stop();
  });

  const register = (c: RawSipClient, callId: string, cseq: number, auth?: string) =>
    [
      `REGISTER sip:${DOMAIN} SIP/2.0`,
      `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')}`,
      'Max-Forwards: 70',
      `From: <sip:alice@${DOMAIN}>;tag=${fresh('t')}`,
      `To: <sip:alice@${DOMAIN}>`,
      `Call-ID: ${callId}`,
      `CSeq: ${cseq} REGISTER`,
      `Contact: <sip:alice@127.0.0.1:${c.localPort};transport=tcp>`,
      ...(auth ? [`Authorization: ${auth}`] : []),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');

  const notOfferedLines = () =>
    logLines.filter((l) => l.level === 'warn' && l.reason === 'algorithm_not_offered');

  it('answers a REGISTER in SHA-512-256, SHA-256 or a made-up algorithm with a fresh MD5 challenge', async () => {
    const before = await readMetric(httpUrl, 'parley_auth_failures_total', {
      reason: 'algorithm_not_offered',
    });
    const c = await RawSipClient.open(port);
    const callId = fresh('alg-reg');
    let cseq = 1;
    c.send(register(c, callId, cseq++));
    let challenge = await c.response();
    expect(challenge.status).toBe(401);
    expect(challenge.headers('www-authenticate')).toHaveLength(1);
    expect(challenge.header('www-authenticate')).toMatch(/algorithm=MD5/);

    for (const algorithm of ['SHA-512-256', 'SHA-256', 'X-ROT13']) {
      const answer = digestAnswer(challenge.header('www-authenticate') ?? '', {
        user: 'alice',
        password: 'secret',
        method: 'REGISTER',
        uri: `sip:${DOMAIN}`,
        algorithm,
      });
      c.send(register(c, callId, cseq++, answer));
      const refused = await c.response();
      expect(refused.status, `${algorithm}: ${refused.startLine}`).toBe(401);
      const again = refused.header('www-authenticate') ?? '';
      expect(again).toMatch(/algorithm=MD5/);
      expect(again).not.toMatch(/stale/i);
      // A fresh challenge: a new nonce, not the one answered.
      expect(/nonce="([^"]+)"/.exec(again)?.[1]).not.toBe(/nonce="([^"]+)"/.exec(answer)?.[1]);
      challenge = refused;
    }
    const lines = notOfferedLines().filter((l) => l.user === 'alice');
    expect(lines.map((l) => l.algorithm)).toEqual(['SHA-512-256', 'SHA-256', 'X-ROT13']);
    expect(lines[0]).toMatchObject({ address: '127.0.0.1', offered: ['MD5'] });
    expect(JSON.stringify(lines)).not.toMatch(/response|[0-9a-f]{32}/);
    expect(await readMetric(httpUrl, 'parley_auth_failures_total', { reason: 'algorithm_not_offered' })).toBe(
      (Number.isNaN(before) ? 0 : before) + 3,
    );

    // The algorithm it offered passes on the same connection.
    c.send(
      register(
        c,
        callId,
        cseq++,
        digestAnswer(challenge.header('www-authenticate') ?? '', {
          user: 'alice',
          password: 'secret',
          method: 'REGISTER',
          uri: `sip:${DOMAIN}`,
        }),
      ),
    );
    expect((await c.response()).status).toBe(200);
    c.close();
  });

  it('answers a MESSAGE whose Proxy-Authorization names an algorithm never offered with a fresh 407', async () => {
    const c = await RawSipClient.open(port);
    const callId = fresh('alg-msg');
    const message = (cseq: number, auth?: string) =>
      [
        `MESSAGE sip:alice@${DOMAIN} SIP/2.0`,
        `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')}`,
        'Max-Forwards: 70',
        `From: <sip:bob@${DOMAIN}>;tag=${fresh('t')}`,
        `To: <sip:alice@${DOMAIN}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} MESSAGE`,
        ...(auth ? [`Proxy-Authorization: ${auth}`] : []),
        'Content-Type: text/plain',
        'Content-Length: 2',
        '',
        'hi',
      ].join('\r\n');
    c.send(message(1));
    const challenge = await c.response();
    expect(challenge.status).toBe(407);
    const offered = challenge.header('proxy-authenticate') ?? '';
    const answer = (algorithm?: string) =>
      digestAnswer(offered, {
        user: 'bob',
        password: 'secret',
        method: 'MESSAGE',
        uri: `sip:alice@${DOMAIN}`,
        algorithm,
      });
    c.send(message(2, answer('MD5-sess')));
    const refused = await c.response();
    expect(refused.status).toBe(407);
    expect(refused.header('proxy-authenticate')).toMatch(/algorithm=MD5/);
    expect(notOfferedLines().some((l) => l.user === 'bob' && l.algorithm === 'MD5-sess')).toBe(true);

    // The same nonce answered in MD5 passes authentication (alice is signed in from the test above
    // over a closed connection, so any final answer but 407 means bob's credentials were taken).
    c.send(message(3, answer()));
    expect((await c.response()).status).not.toBe(407);
    c.close();
  });
});
