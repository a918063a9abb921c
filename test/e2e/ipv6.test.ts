import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipv6 } from '../sip/ipv6-torture.js';
import { digestAnswer, fresh, RawMessage, RawSipClient } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** A SIP client on a raw UDP socket bound to [::1]. */
class Udp6Client {
  readonly received: RawMessage[] = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: DgramSocket) {
    socket.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      if (end > 0) this.received.push(new RawMessage(text.slice(0, end), text.slice(end + 4)));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(): Promise<Udp6Client> {
    const socket = createSocket('udp6');
    await new Promise<void>((r) => socket.bind(0, '::1', () => r()));
    return new Udp6Client(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(to: number, data: string | Buffer): void {
    this.socket.send(typeof data === 'string' ? Buffer.from(data) : data, to, '::1');
  }

  async next(test: (m: RawMessage) => boolean, timeoutMs = 3000): Promise<RawMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.received.findIndex(test);
      if (i >= 0) return this.received.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`nothing matching within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  response(): Promise<RawMessage> {
    return this.next((m) => m.status !== undefined && m.status !== 100);
  }

  request(method: string): Promise<RawMessage> {
    return this.next((m) => m.method === method);
  }

  close(): void {
    this.socket.close();
  }
}

function registerText(o: {
  transport: 'TCP' | 'UDP';
  port: number;
  user: string;
  domain: string;
  callId: string;
  cseq: number;
  auth?: string;
}): string {
  const params = o.transport === 'TCP' ? ';transport=tcp' : '';
  return [
    `REGISTER sip:${o.domain} SIP/2.0`,
    `Via: SIP/2.0/${o.transport} [::1]:${o.port};rport;branch=${fresh('z9hG4bK')}`,
    'Max-Forwards: 70',
    `From: <sip:${o.user}@${o.domain}>;tag=${fresh('t')}`,
    `To: <sip:${o.user}@${o.domain}>`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq} REGISTER`,
    `Contact: <sip:${o.user}@[::1]:${o.port}${params}>`,
    'Expires: 600',
    ...(o.auth ? [`Authorization: ${o.auth}`] : []),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

function messageText(o: {
  port: number;
  from: string;
  to: string;
  domain: string;
  callId: string;
  cseq: number;
  auth?: string;
}) {
  const body = 'hello over IPv6';
  return [
    `MESSAGE sip:${o.to}@${o.domain} SIP/2.0`,
    `Via: SIP/2.0/TCP [::1]:${o.port};rport;branch=${fresh('z9hG4bK')}`,
    'Max-Forwards: 70',
    `From: <sip:${o.from}@${o.domain}>;tag=${fresh('t')}`,
    `To: <sip:${o.to}@${o.domain}>`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq} MESSAGE`,
    ...(o.auth ? [`Proxy-Authorization: ${o.auth}`] : []),
    'Content-Type: text/plain',
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

/** A response to the request, as a UAS writes it (RFC 3261 8.2.6): Vias, From, To, Call-ID, CSeq copied. */
function answer(request: RawMessage, status: string): string {
  const copied = request.head
    .split('\r\n')
    .slice(1)
    .filter((l) => /^(via|from|to|call-id|cseq):/i.test(l))
    .map((l) => (/^to:/i.test(l) && !/;tag=/.test(l) ? `${l};tag=${fresh('b')}` : l));
  return [`SIP/2.0 ${status}`, ...copied, 'Content-Length: 0', '', ''].join('\r\n');
}

/** An RFC 5118 message, with its top Via naming our client so the answer comes back to it. */
function overTheWire(message: Buffer, port: number): Buffer {
  const text = message.toString('latin1');
  return Buffer.from(
    text.replace(/\r\nVia: [^\r]*/, `\r\nVia: SIP/2.0/UDP [::1]:${port};rport;branch=${fresh('z9hG4bK')}`),
    'latin1',
  );
}

describe('IPv6: listening on [::1] (RFC 5118)', () => {
  let srv: TestServer;
  let tcpPort: number;
  let udpPort: number;

  beforeAll(async () => {
    srv = await startTestServer({
      listen: {
        tcp: { host: '::1', port: 0 },
        udp: { host: '::1', port: 0 },
        ws: { host: '127.0.0.1', port: 0 },
      },
    });
    tcpPort = srv.tcpPort;
    udpPort = srv.server.listening.find((l) => l.transport === 'udp')?.port ?? 0;
    for (const user of ['alice', 'bob']) await srv.addUser(user, `${user}-pw`);
  });

  afterAll(async () => {
    await srv.stop();
  });

  it('listens on [::1] for TCP and UDP', () => {
    expect(srv.server.listening).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ transport: 'tcp', host: '::1' }),
        expect.objectContaining({ transport: 'udp', host: '::1' }),
      ]),
    );
  });

  it('alice signs in over TCP and bob over UDP; a MESSAGE goes from one to the other over [::1]', async () => {
    const alice = await RawSipClient.open(tcpPort, '::1');
    const bob = await Udp6Client.open();
    try {
      // alice, TCP
      const aliceCall = fresh('reg');
      alice.send(
        registerText({
          transport: 'TCP',
          port: alice.localPort,
          user: 'alice',
          domain: srv.domain,
          callId: aliceCall,
          cseq: 1,
        }),
      );
      const aliceChallenge = await alice.response();
      expect(aliceChallenge.status).toBe(401);
      // RFC 3581: rport filled in; received is the IPv6address without brackets (RFC 3261 25.1).
      expect(aliceChallenge.header('via')).toMatch(
        new RegExp(`^SIP/2.0/TCP \\[::1\\]:${alice.localPort};rport=${alice.localPort};`),
      );
      expect(aliceChallenge.header('via')).toContain('received=::1');
      alice.send(
        registerText({
          transport: 'TCP',
          port: alice.localPort,
          user: 'alice',
          domain: srv.domain,
          callId: aliceCall,
          cseq: 2,
          auth: digestAnswer(aliceChallenge.header('www-authenticate') ?? '', {
            user: 'alice',
            password: 'alice-pw',
            method: 'REGISTER',
            uri: `sip:${srv.domain}`,
          }),
        }),
      );
      const aliceOk = await alice.response();
      expect(aliceOk.status).toBe(200);
      expect(aliceOk.header('contact')).toContain(`<sip:alice@[::1]:${alice.localPort};transport=tcp>`);

      // bob, UDP
      const bobCall = fresh('reg');
      bob.send(
        udpPort,
        registerText({
          transport: 'UDP',
          port: bob.port,
          user: 'bob',
          domain: srv.domain,
          callId: bobCall,
          cseq: 1,
        }),
      );
      const bobChallenge = await bob.response();
      expect(bobChallenge.status).toBe(401);
      expect(bobChallenge.header('via')).toContain(`rport=${bob.port}`);
      expect(bobChallenge.header('via')).toContain('received=::1');
      bob.send(
        udpPort,
        registerText({
          transport: 'UDP',
          port: bob.port,
          user: 'bob',
          domain: srv.domain,
          callId: bobCall,
          cseq: 2,
          auth: digestAnswer(bobChallenge.header('www-authenticate') ?? '', {
            user: 'bob',
            password: 'bob-pw',
            method: 'REGISTER',
            uri: `sip:${srv.domain}`,
          }),
        }),
      );
      expect((await bob.response()).status).toBe(200);

      // alice -> bob over the connection she registered on (so no challenge): the request
      // reaches bob over UDP with our Via on [::1].
      const callId = fresh('msg');
      alice.send(
        messageText({ port: alice.localPort, from: 'alice', to: 'bob', domain: srv.domain, callId, cseq: 1 }),
      );
      const delivered = await bob.request('MESSAGE');
      expect(delivered.body).toBe('hello over IPv6');
      expect(delivered.startLine).toBe(`MESSAGE sip:bob@[::1]:${bob.port} SIP/2.0`);
      const vias = delivered.head.split('\r\n').filter((l) => /^via:/i.test(l));
      expect(vias[0]).toMatch(new RegExp(`^Via: SIP/2.0/UDP \\[::1\\]:${udpPort};branch=z9hG4bK`));
      expect(vias[1]).toContain(`[::1]:${alice.localPort};rport=${alice.localPort}`);
      bob.send(udpPort, answer(delivered, '200 OK'));
      const ok = await alice.response();
      expect(ok.status).toBe(200);
      expect(ok.header('cseq')).toBe('1 MESSAGE');
    } finally {
      alice.close();
      bob.close();
    }
  });

  it('answers the RFC 5118 messages as the RFC says: 400 only for 4.2', async () => {
    const c = await Udp6Client.open();
    try {
      for (const name of ['ipv6-good', 'port-ambiguous', 'port-unambiguous'] as const) {
        c.send(udpPort, overTheWire(ipv6[name], c.port));
        const response = await c.response();
        // The Request-URI names another host: refused, but parsed, never 400.
        expect(response.status, name).not.toBe(400);
        expect(response.header('via'), name).toContain(`received=::1`);
      }
      c.send(udpPort, overTheWire(ipv6['ipv6-bad'], c.port));
      const bad = await c.response();
      expect(bad.status).toBe(400);
      expect(bad.header('call-id')).toBe('SSG9559905523997077@hlau_4100');
    } finally {
      c.close();
    }
  });
});
