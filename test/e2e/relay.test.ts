import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestAnswer, fresh, RawSipClient, Sink } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';

/**
 * An attacker on raw sockets tries to use the server as a relay or to reach a user's device
 * without signing in: pre-loaded Routes, made-up To tags, foreign Request-URIs and forged or
 * borrowed Record-Routes. Nothing may reach the sink or bob's device, and a real dialog's
 * in-dialog requests still pass along the signed Record-Route.
 */

interface Req {
  method: string;
  ruri: string;
  from: string;
  fromTag: string;
  to: string;
  toTag?: string;
  callId: string;
  cseq?: number;
  routes?: string[];
  contact?: string;
  extra?: string[];
  body?: string;
  port: number;
}

function build(r: Req): string {
  const body = r.body ?? '';
  const lines = [
    `${r.method} ${r.ruri} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.1:${r.port};branch=z9hG4bK${fresh('b')}`,
    `From: <sip:${r.from}>;tag=${r.fromTag}`,
    `To: <sip:${r.to}>${r.toTag ? `;tag=${r.toTag}` : ''}`,
    `Call-ID: ${r.callId}`,
    `CSeq: ${r.cseq ?? 1} ${r.method}`,
    'Max-Forwards: 70',
    ...(r.routes ?? []).map((route) => `Route: ${route}`),
    ...(r.contact ? [`Contact: ${r.contact}`] : []),
    ...(r.extra ?? []),
    ...(body ? ['Content-Type: text/plain'] : []),
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

describe('no relay and no bypass through Route (attacker on raw sockets)', () => {
  let t: TestServer;
  let sink: Sink;
  let bob: RawSipClient;
  let alice: RawSipClient;
  let serverRoute: string;
  /** The Record-Route the server inserted, signed for the alice -> bob dialog. */
  let signedRecordRoute = '';
  const dialog = { callId: fresh('call-'), aliceTag: fresh('a'), bobTag: fresh('b') };

  beforeAll(async () => {
    t = await startTestServer();
    await t.addUser('alice', 'alice-pw');
    await t.addUser('bob', 'bob-pw');
    sink = await Sink.start();
    serverRoute = `<sip:127.0.0.1:${t.tcpPort};transport=tcp;lr>`;

    // bob signs in from his desk: requests for him come back over this connection.
    bob = await RawSipClient.open(t.tcpPort);
    const register = (cseq: number, auth?: string) =>
      build({
        method: 'REGISTER',
        ruri: 'sip:example.com',
        from: 'bob@example.com',
        fromTag: 'reg',
        to: 'bob@example.com',
        callId: 'bob-reg',
        cseq,
        port: bob.localPort,
        contact: `<sip:bob@127.0.0.1:${bob.localPort};transport=tcp>;expires=600`,
        extra: auth ? [`Authorization: ${auth}`] : [],
      });
    bob.send(register(1));
    const challenge = await bob.response();
    expect(challenge.status).toBe(401);
    bob.send(
      register(
        2,
        digestAnswer(challenge.header('www-authenticate') ?? '', {
          user: 'bob',
          password: 'bob-pw',
          method: 'REGISTER',
          uri: 'sip:example.com',
        }),
      ),
    );
    expect((await bob.response()).status).toBe(200);

    // alice calls bob through the server, authenticated: a real dialog with a signed Record-Route.
    alice = await RawSipClient.open(t.tcpPort);
    const invite = (cseq: number, auth?: string) =>
      build({
        method: 'INVITE',
        ruri: 'sip:bob@example.com',
        from: 'alice@example.com',
        fromTag: dialog.aliceTag,
        to: 'bob@example.com',
        callId: dialog.callId,
        cseq,
        port: alice.localPort,
        contact: `<sip:alice@127.0.0.1:${alice.localPort};transport=tcp>`,
        extra: auth ? [`Proxy-Authorization: ${auth}`] : [],
      });
    alice.send(invite(1));
    const proxyChallenge = await alice.response();
    expect(proxyChallenge.status).toBe(407);
    alice.send(build({ ...ackFor(proxyChallenge), port: alice.localPort }));
    alice.send(
      invite(
        2,
        digestAnswer(proxyChallenge.header('proxy-authenticate') ?? '', {
          user: 'alice',
          password: 'alice-pw',
          method: 'INVITE',
          uri: 'sip:bob@example.com',
        }),
      ),
    );
    const atBob = await bob.next();
    expect(atBob.method).toBe('INVITE');
    signedRecordRoute = atBob.headers('record-route').join(', ');
    expect(signedRecordRoute).toMatch(/;dlg=[A-Za-z0-9_-]{16}/);
    const ok = [
      'SIP/2.0 200 OK',
      ...atBob.headers('via').map((v) => `Via: ${v}`),
      `From: ${atBob.header('from')}`,
      `To: ${atBob.header('to')};tag=${dialog.bobTag}`,
      `Call-ID: ${dialog.callId}`,
      `CSeq: ${atBob.header('cseq')}`,
      ...atBob.headers('record-route').map((v) => `Record-Route: ${v}`),
      `Contact: <sip:bob@127.0.0.1:${bob.localPort};transport=tcp>`,
      'Content-Length: 0',
    ];
    bob.send(`${ok.join('\r\n')}\r\n\r\n`);
    expect((await alice.response()).status).toBe(200);
  });

  afterAll(async () => {
    alice?.close();
    bob?.close();
    await sink?.close();
    await t?.stop();
  });

  function ackFor(challenge: { header(n: string): string | undefined }): Req {
    return {
      method: 'ACK',
      ruri: 'sip:bob@example.com',
      from: 'alice@example.com',
      fromTag: dialog.aliceTag,
      to: 'bob@example.com',
      toTag: /tag=([^;>\s]+)/.exec(challenge.header('to') ?? '')?.[1],
      callId: dialog.callId,
      cseq: 1,
      port: 0,
    };
  }

  it('forwards in-dialog requests along the Record-Route it signed, both ways, without a challenge', async () => {
    // The caller's ACK and the callee's BYE follow the route set (RFC 3261 12.2.1.1).
    alice.send(
      build({
        method: 'ACK',
        ruri: `sip:bob@127.0.0.1:${bob.localPort};transport=tcp`,
        from: 'alice@example.com',
        fromTag: dialog.aliceTag,
        to: 'bob@example.com',
        toTag: dialog.bobTag,
        callId: dialog.callId,
        cseq: 2,
        routes: [signedRecordRoute],
        port: alice.localPort,
      }),
    );
    expect((await bob.next()).method).toBe('ACK');
    bob.send(
      build({
        method: 'BYE',
        ruri: `sip:alice@127.0.0.1:${alice.localPort};transport=tcp`,
        from: 'bob@example.com',
        fromTag: dialog.bobTag,
        to: 'alice@example.com',
        toTag: dialog.aliceTag,
        callId: dialog.callId,
        routes: [signedRecordRoute],
        port: bob.localPort,
      }),
    );
    const bye = await alice.next();
    expect(bye.method).toBe('BYE');
  });

  /** A request from a stranger claiming to be alice, towards the sink unless told otherwise. */
  const fromAlice = (sinkPort: number, over: Partial<Omit<Req, 'port'>>): Omit<Req, 'port'> => ({
    method: 'MESSAGE',
    ruri: `sip:victim@127.0.0.1:${sinkPort}`,
    from: 'alice@example.com',
    fromTag: fresh('x'),
    to: `victim@127.0.0.1:${sinkPort}`,
    callId: fresh('relay-'),
    body: 'spam',
    ...over,
  });
  const attacks: Array<[string, (ports: { sink: number; bob: number }) => Omit<Req, 'port'>]> = [
    [
      'MESSAGE to a foreign host with a pre-loaded Route through us, From alice',
      (p) => fromAlice(p.sink, { routes: [serverRoute, `<sip:127.0.0.1:${p.sink};lr>`] }),
    ],
    [
      'INVITE to a foreign host with a pre-loaded Route through us',
      (p) =>
        fromAlice(p.sink, {
          method: 'INVITE',
          body: '',
          routes: [`${serverRoute}, <sip:127.0.0.1:${p.sink};lr>`],
          contact: '<sip:evil@127.0.0.1:9;transport=tcp>',
        }),
    ],
    [
      "MESSAGE straight to bob's device with a spoofed From and a Route through us",
      (p) =>
        fromAlice(p.sink, {
          ruri: `sip:bob@127.0.0.1:${p.bob};transport=tcp`,
          to: 'bob@example.com',
          routes: [serverRoute],
          body: 'your password please',
        }),
    ],
    [
      'in-dialog MESSAGE (made-up To tag) to a foreign Request-URI, no Route',
      (p) => fromAlice(p.sink, { toTag: 'made-up' }),
    ],
    [
      'out-of-dialog MESSAGE to a foreign domain from a stranger',
      (p) =>
        fromAlice(p.sink, {
          ruri: 'sip:victim@elsewhere.example',
          from: 'stranger@elsewhere.example',
          to: 'victim@elsewhere.example',
        }),
    ],
    [
      'in-dialog request with a forged Record-Route signature',
      (p) =>
        fromAlice(p.sink, {
          toTag: 'made-up',
          routes: [`<sip:rr-test@127.0.0.1:${t.tcpPort};transport=tcp;lr;dlg=AAAAAAAAAAAAAAAA>`],
        }),
    ],
    [
      "in-dialog request borrowing another dialog's signed Record-Route",
      (p) =>
        fromAlice(p.sink, {
          fromTag: dialog.aliceTag,
          toTag: dialog.bobTag,
          callId: fresh('borrowed-'),
          routes: [signedRecordRoute],
        }),
    ],
  ];

  for (const [name, make] of attacks) {
    it(`refuses: ${name}`, async () => {
      const stranger = await RawSipClient.open(t.tcpPort);
      stranger.send(build({ ...make({ sink: sink.port, bob: bob.localPort }), port: stranger.localPort }));
      const answer = await stranger.response();
      // A challenge (407) or a refusal: never forwarded.
      expect([403, 407]).toContain(answer.status);
      stranger.close();
    });
  }

  it('drops an ACK that follows a Route it did not sign', async () => {
    const stranger = await RawSipClient.open(t.tcpPort);
    stranger.send(
      build({
        method: 'ACK',
        ruri: `sip:victim@127.0.0.1:${sink.port}`,
        from: 'alice@example.com',
        fromTag: fresh('x'),
        to: 'victim@example.com',
        toTag: 'made-up',
        callId: fresh('ack-'),
        routes: [serverRoute, `<sip:127.0.0.1:${sink.port};lr>`],
        port: stranger.localPort,
      }),
    );
    expect(await stranger.silent(300)).toBe(true);
    stranger.close();
  });

  it('let nothing reach the sink or bob', async () => {
    expect(await bob.silent(300)).toBe(true);
    expect(sink.connections).toBe(0);
    expect(sink.bytes).toBe(0);
  });
});
