import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDnsServer } from '../support/dns.js';
import { fresh, type RawMessage, type RawSipClient } from '../support/raw-sip.js';
import { allow, type Org, signInInside, startOrg } from './edge-support.js';

/**
 * Calls across organisations: INVITE/ACK/BYE and CANCEL from alice@parley.test to
 * bob@partner.test through both homes and both edges (mutual TLS between the edges), the
 * dialog held together by Record-Route (RFC 3261 12, 16.6). Raw clients play both user
 * agents, so every header they send is the test's own. Inside clients connect from
 * 127.0.0.2 / 127.0.0.3 (127.0.0.1 is the edge the homes trust).
 */
describe('calls across the edges', { timeout: 120_000 }, () => {
  let dns: TestDnsServer;
  let a: Org;
  let b: Org;
  let alice: RawSipClient;
  let bob: RawSipClient;
  const SDP =
    'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n';

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    a = await startOrg('parley', 'server', dns);
    b = await startOrg('partner', 'partner-edge', dns);
    for (const [org, target] of [
      [a, 'edge.parley.test'],
      [b, 'edge.partner.test'],
    ] as const) {
      dns.zone.push(
        {
          type: 'SRV',
          name: `_sipfederationtls._tcp.${org.domain}`,
          priority: 0,
          weight: 0,
          port: org.federationPort,
          target,
        },
        { type: 'A', name: target, address: '127.0.0.1' },
      );
    }
    await a.home.addUser('alice', 'alice-secret');
    await b.home.addUser('bob', 'bob-secret');
    alice = await signInInside(a.home.tcpPort, 'alice', 'parley.test', '127.0.0.2');
    bob = await signInInside(b.home.tcpPort, 'bob', 'partner.test', '127.0.0.3');
    await allow(a, 'partner.test');
    await allow(b, 'parley.test');
  });

  afterAll(async () => {
    alice?.close();
    bob?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await dns?.close();
  });

  /** Nothing of an organisation's inside in what the other side's user agent sees. */
  const expectHidden = (m: RawMessage, org: Org, client: RawSipClient) => {
    for (const port of [org.home.tcpPort, org.internalPort, client.localPort])
      expect(m.head).not.toContain(`:${port}`);
    expect(m.head).not.toMatch(/^p-asserted-identity:|^p-parley-client:/im);
  };

  /** Alice's INVITE to bob; returns it as bob received it. */
  async function invite(): Promise<Call> {
    const call: Call = {
      callId: fresh('call'),
      fromTag: fresh('a'),
      cseq: 1,
      branch: fresh('z9hG4bK'),
      invite: '',
    };
    const send = () => {
      call.invite = [
        'INVITE sip:bob@partner.test SIP/2.0',
        `Via: SIP/2.0/TCP 127.0.0.2:${alice.localPort};branch=${call.branch};rport`,
        'Max-Forwards: 70',
        `From: <sip:alice@parley.test>;tag=${call.fromTag}`,
        'To: <sip:bob@partner.test>',
        `Call-ID: ${call.callId}`,
        `CSeq: ${call.cseq} INVITE`,
        `Contact: <sip:alice@127.0.0.2:${alice.localPort};transport=tcp>`,
        'Content-Type: application/sdp',
        `Content-Length: ${Buffer.byteLength(SDP)}`,
        '',
        SDP,
      ].join('\r\n');
      alice.send(call.invite);
    };
    send();
    // Alice signed in on this connection: her home relays without a challenge.
    call.atBob = await nextRequest(bob, 8000);
    return call;
  }

  /** The ACK of a non-2xx final response: hop by hop, the INVITE's branch (RFC 3261 17.1.1.3). */
  function ackNon2xx(call: Call, response: RawMessage): void {
    alice.send(
      [
        'ACK sip:bob@partner.test SIP/2.0',
        `Via: SIP/2.0/TCP 127.0.0.2:${alice.localPort};branch=${call.branch};rport`,
        'Max-Forwards: 70',
        `From: <sip:alice@parley.test>;tag=${call.fromTag}`,
        `To: ${response.header('to')}`,
        `Call-ID: ${call.callId}`,
        `CSeq: ${call.cseq} ACK`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
  }

  /** Bob's response to the INVITE he got: To tag, Record-Route copied (RFC 3261 12.1.1), his Contact. */
  function bobAnswers(call: Call, status: number, reason: string, body = ''): void {
    const inv = call.atBob as RawMessage;
    call.bobTag ??= fresh('b');
    bob.send(
      [
        `SIP/2.0 ${status} ${reason}`,
        ...inv.headers('via').map((v) => `Via: ${v}`),
        ...inv.headers('record-route').map((r) => `Record-Route: ${r}`),
        `From: ${inv.header('from')}`,
        `To: ${inv.header('to')};tag=${call.bobTag}`,
        `Call-ID: ${inv.header('call-id')}`,
        `CSeq: ${inv.header('cseq')}`,
        ...(status < 300 ? [`Contact: <sip:bob@127.0.0.3:${bob.localPort};transport=tcp>`] : []),
        ...(body ? ['Content-Type: application/sdp'] : []),
        `Content-Length: ${Buffer.byteLength(body)}`,
        '',
        body,
      ].join('\r\n'),
    );
  }

  /** An in-dialog request along a route set (RFC 3261 12.2.1.1). */
  function inDialog(
    from: RawSipClient,
    ip: string,
    method: string,
    dialog: { target: string; routes: string[]; local: string; remote: string; callId: string; cseq: number },
    branch = fresh('z9hG4bK'),
  ): void {
    from.send(
      [
        `${method} ${dialog.target} SIP/2.0`,
        `Via: SIP/2.0/TCP ${ip}:${from.localPort};branch=${branch};rport`,
        'Max-Forwards: 70',
        ...dialog.routes.map((r) => `Route: ${r}`),
        `From: ${dialog.local}`,
        `To: ${dialog.remote}`,
        `Call-ID: ${dialog.callId}`,
        `CSeq: ${dialog.cseq} ${method}`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
  }

  it('sets up a call through both edges (Record-Route), ACKs the 2xx end to end and hangs up from the caller', async () => {
    const call = await invite();
    const atBob = call.atBob as RawMessage;
    expect(atBob.method).toBe('INVITE');
    expect(atBob.body).toBe(SDP);
    expectHidden(atBob, a, alice);
    const bobRoutes = splitRoutes(atBob.headers('record-route'));
    expect(bobRoutes.length).toBeGreaterThan(0);

    bobAnswers(call, 180, 'Ringing');
    const ringing = await alice.response(5000);
    expect(ringing.status).toBe(180);
    bobAnswers(call, 200, 'OK', SDP);
    const ok = await alice.response(5000);
    expect(ok.status).toBe(200);
    expect(ok.body).toBe(SDP);
    expectHidden(ok, b, bob);

    // Alice's side of the dialog: route set = Record-Route reversed, target = bob's Contact.
    const aliceDialog = {
      target: contactUri(ok),
      routes: splitRoutes(ok.headers('record-route')).reverse(),
      local: `<sip:alice@parley.test>;tag=${call.fromTag}`,
      remote: ok.header('to') ?? '',
      callId: call.callId,
      cseq: call.cseq,
    };
    inDialog(alice, '127.0.0.2', 'ACK', aliceDialog);
    const ack = await nextRequest(bob);
    expect(ack.method).toBe('ACK');
    expect(ack.startLine).toContain(`sip:bob@127.0.0.3:${bob.localPort}`);
    expectHidden(ack, a, alice);

    inDialog(alice, '127.0.0.2', 'BYE', { ...aliceDialog, cseq: call.cseq + 1 });
    const bye = await nextRequest(bob);
    expect(bye.method).toBe('BYE');
    expectHidden(bye, a, alice);
    answerRequest(bob, bye, 200);
    const byeOk = await alice.response(5000);
    expect(byeOk.status).toBe(200);
    expect(byeOk.header('cseq')).toMatch(/BYE/);
  });

  it('the callee hangs up along its own route set', async () => {
    const call = await invite();
    const atBob = call.atBob as RawMessage;
    bobAnswers(call, 200, 'OK', SDP);
    const ok = await alice.response(5000);
    expect(ok.status).toBe(200);
    inDialog(alice, '127.0.0.2', 'ACK', {
      target: contactUri(ok),
      routes: splitRoutes(ok.headers('record-route')).reverse(),
      local: `<sip:alice@parley.test>;tag=${call.fromTag}`,
      remote: ok.header('to') ?? '',
      callId: call.callId,
      cseq: call.cseq,
    });
    expect((await nextRequest(bob)).method).toBe('ACK');

    // Bob's side (UAS, RFC 3261 12.1.1): route set = Record-Route as received, target = alice's Contact.
    inDialog(bob, '127.0.0.3', 'BYE', {
      target: contactUri(atBob),
      routes: splitRoutes(atBob.headers('record-route')),
      local: `${atBob.header('to')};tag=${call.bobTag}`,
      remote: atBob.header('from') ?? '',
      callId: call.callId,
      cseq: 1,
    });
    const bye = await nextRequest(alice);
    expect(bye.method).toBe('BYE');
    expect(bye.startLine).toContain(`sip:alice@127.0.0.2:${alice.localPort}`);
    expectHidden(bye, b, bob);
    answerRequest(alice, bye, 200);
    const byeOk = await bob.response(5000);
    expect(byeOk.status).toBe(200);
  });

  it('CANCEL of a ringing call reaches the callee across both edges; the caller gets 487', async () => {
    const call = await invite();
    const atBob = call.atBob as RawMessage;
    bobAnswers(call, 180, 'Ringing');
    expect((await alice.response(5000)).status).toBe(180);

    // RFC 3261 9.1: the CANCEL copies the INVITE's Request-URI, top Via (branch), Call-ID, CSeq number.
    alice.send(
      [
        'CANCEL sip:bob@partner.test SIP/2.0',
        `Via: SIP/2.0/TCP 127.0.0.2:${alice.localPort};branch=${call.branch};rport`,
        'Max-Forwards: 70',
        `From: <sip:alice@parley.test>;tag=${call.fromTag}`,
        'To: <sip:bob@partner.test>',
        `Call-ID: ${call.callId}`,
        `CSeq: ${call.cseq} CANCEL`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    const cancel = await nextRequest(bob);
    expect(cancel.method).toBe('CANCEL');
    expect(cancel.header('call-id')).toBe(atBob.header('call-id'));
    expectHidden(cancel, a, alice);
    answerRequest(bob, cancel, 200);
    bobAnswers(call, 487, 'Request Terminated');
    // The ACK for the 487 is the proxy's, hop by hop (RFC 3261 17.1.1.3), from bob's home.
    const hopAck = await nextRequest(bob);
    expect(hopAck.method).toBe('ACK');
    expect(hopAck.header('cseq')).toMatch(/ACK/);

    const seen: number[] = [];
    while (!seen.includes(487)) {
      const r = await alice.response(5000);
      seen.push(r.status ?? 0);
      if (r.status === 487) {
        expectHidden(r, b, bob);
        ackNon2xx(call, r);
      }
    }
    expect(seen).toContain(200);
    // Nothing more reaches bob: the caller's ACK for the 487 stopped at its home.
    expect(await bob.silent(500)).toBe(true);
  });
});

interface Call {
  callId: string;
  fromTag: string;
  cseq: number;
  branch: string;
  invite: string;
  atBob?: RawMessage;
  bobTag?: string;
}

async function nextRequest(c: RawSipClient, timeoutMs = 5000): Promise<RawMessage> {
  for (;;) {
    const m = await c.next(timeoutMs);
    if (m.method) return m;
  }
}

function answerRequest(c: RawSipClient, request: RawMessage, status: number): void {
  c.send(
    [
      `SIP/2.0 ${status} OK`,
      ...request.headers('via').map((v) => `Via: ${v}`),
      `From: ${request.header('from')}`,
      `To: ${request.header('to')}`,
      `Call-ID: ${request.header('call-id')}`,
      `CSeq: ${request.header('cseq')}`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
}

/** Record-Route values, one entry each (a header may carry several, comma-separated). */
function splitRoutes(values: string[]): string[] {
  return values.flatMap((v) => v.split(/,(?=\s*<)/).map((r) => r.trim()));
}

function contactUri(m: RawMessage): string {
  const uri = /<([^>]+)>/.exec(m.header('contact') ?? '')?.[1];
  if (!uri) throw new Error(`no Contact in ${m.startLine}`);
  return uri;
}
