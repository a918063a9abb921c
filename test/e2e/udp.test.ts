import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from '../support/jssip.js';
import { freePort } from '../support/ports.js';
import { digestAnswer, fresh, RawMessage } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS } from '../support/sipp.js';

/** A SIP client on a raw UDP socket: every datagram it gets, parsed, and what it sends as written. */
class UdpClient {
  readonly received: Array<RawMessage | Buffer> = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: DgramSocket) {
    socket.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      this.received.push(
        /^(SIP\/2\.0|[A-Z]+ )/.test(text) && end > 0
          ? new RawMessage(text.slice(0, end), text.slice(end + 4))
          : data,
      );
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(port = 0): Promise<UdpClient> {
    const socket = createSocket('udp4');
    await new Promise<void>((r) => socket.bind(port, '127.0.0.1', () => r()));
    return new UdpClient(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(to: number, data: string | Buffer): void {
    const buf = typeof data === 'string' ? Buffer.from(data.replace(/\r?\n/g, '\r\n')) : data;
    this.socket.send(buf, to, '127.0.0.1');
  }

  /** The next datagram passing the test (already received ones count once). */
  async next<T extends RawMessage | Buffer>(
    test: (m: RawMessage | Buffer) => m is T,
    timeoutMs = 3000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.received.findIndex(test);
      if (i >= 0) return this.received.splice(i, 1)[0] as T;
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

  response(timeoutMs = 3000): Promise<RawMessage> {
    return this.next(
      (m): m is RawMessage => m instanceof RawMessage && m.status !== undefined && m.status !== 100,
      timeoutMs,
    );
  }

  request(method: string, timeoutMs = 3000): Promise<RawMessage> {
    return this.next((m): m is RawMessage => m instanceof RawMessage && m.method === method, timeoutMs);
  }

  close(): void {
    this.socket.close();
  }
}

interface RegisterOptions {
  user: string;
  domain: string;
  cseq: number;
  auth?: string;
  callId: string;
  via?: string;
  branch?: string;
  fromTag?: string;
}

function register(c: UdpClient, to: number, opts: RegisterOptions) {
  c.send(to, registerText(c, opts));
}

function registerText(c: UdpClient, opts: RegisterOptions): string {
  return [
    `REGISTER sip:${opts.domain} SIP/2.0`,
    `Via: ${opts.via ?? `SIP/2.0/UDP 127.0.0.1:${c.port};rport`};branch=${opts.branch ?? fresh('z9hG4bK')}`,
    'Max-Forwards: 70',
    `From: <sip:${opts.user}@${opts.domain}>;tag=${opts.fromTag ?? fresh('t')}`,
    `To: <sip:${opts.user}@${opts.domain}>`,
    `Call-ID: ${opts.callId}`,
    `CSeq: ${opts.cseq} REGISTER`,
    `Contact: <sip:${opts.user}@127.0.0.1:${c.port}>`,
    'Expires: 600',
    ...(opts.auth ? [`Authorization: ${opts.auth}`] : []),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

async function signIn(
  c: UdpClient,
  udpPort: number,
  user: string,
  domain: string,
  password: string,
): Promise<RawMessage> {
  const callId = fresh('reg');
  register(c, udpPort, { user, domain, cseq: 1, callId });
  const challenge = await c.response();
  expect(challenge.status).toBe(401);
  const auth = digestAnswer(challenge.header('www-authenticate') ?? '', {
    user,
    password,
    method: 'REGISTER',
    uri: `sip:${domain}`,
  });
  register(c, udpPort, { user, domain, cseq: 2, auth, callId });
  return c.response();
}

describe('SIP over UDP (RFC 3261 18)', () => {
  let srv: TestServer;
  let udpPort: number;
  const logLines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    srv = await startTestServer(
      {
        listen: {
          udp: { host: '127.0.0.1', port: 0 },
          tcp: { host: '127.0.0.1', port: 0 },
          ws: { host: '127.0.0.1', port: 0 },
        },
        log: { level: 'info' },
      },
      { logLines },
    );
    udpPort = srv.server.listening.find((l) => l.transport === 'udp')?.port ?? 0;
    for (const user of ['alice', 'bob', 'carol']) await srv.addUser(user, `${user}-pw`);
  });

  afterAll(async () => {
    await srv.stop();
  });

  it('asks for a 16 MiB receive buffer and says what the system granted (net.core.rmem_max caps it)', () => {
    const cap = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
    const line = logLines.find((l) => String(l.msg).startsWith('UDP receive buffer'));
    expect(line?.asked).toBe(16 * 1024 * 1024);
    expect(line?.receiveBufferBytes).toBe(Math.min(16 * 1024 * 1024, cap));
    if (cap < 16 * 1024 * 1024) expect(line?.msg).toMatch(/raise net\.core\.rmem_max/);
  });

  it('signs in with digest; the response names the source in received and rport (RFC 3581)', async () => {
    const alice = await UdpClient.open();
    try {
      const ok = await signIn(alice, udpPort, 'alice', srv.domain, 'alice-pw');
      expect(ok.status).toBe(200);
      expect(ok.header('via')).toContain(`rport=${alice.port}`);
      expect(ok.header('via')).toContain('received=127.0.0.1');
      expect(ok.header('contact')).toContain(`127.0.0.1:${alice.port}`);
    } finally {
      alice.close();
    }
  });

  it('without rport the response goes to the sent-by port, not the source port (RFC 3261 18.2.2)', async () => {
    const sender = await UdpClient.open();
    const listener = await UdpClient.open();
    try {
      register(sender, udpPort, {
        user: 'alice',
        domain: srv.domain,
        cseq: 1,
        callId: fresh('reg'),
        via: `SIP/2.0/UDP 127.0.0.1:${listener.port}`,
      });
      expect((await listener.response()).status).toBe(401);
      expect(sender.received).toHaveLength(0);
    } finally {
      sender.close();
      listener.close();
    }
  });

  it('answers a retransmitted request with the same response, once handled (Timer J)', async () => {
    const c = await UdpClient.open();
    try {
      const text = [
        `OPTIONS sip:127.0.0.1:${udpPort} SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${c.port};branch=${fresh('z9hG4bK')};rport`,
        'Max-Forwards: 70',
        `From: <sip:probe@${srv.domain}>;tag=${fresh('t')}`,
        `To: <sip:127.0.0.1:${udpPort}>`,
        `Call-ID: ${fresh('opt')}`,
        'CSeq: 1 OPTIONS',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
      c.send(udpPort, text);
      const first = await c.response();
      c.send(udpPort, text);
      const again = await c.response();
      expect(again.status).toBe(first.status);
      expect(again.header('to')).toBe(first.header('to'));
    } finally {
      c.close();
    }
  });

  it('answers a retransmitted REGISTER without credentials with the same 401, byte for byte, whose answer signs in (RFC 3261 17.2.2)', async () => {
    const c = await UdpClient.open();
    try {
      const callId = fresh('reg');
      const text = registerText(c, {
        user: 'alice',
        domain: srv.domain,
        cseq: 1,
        callId,
        branch: fresh('z9hG4bK'),
        fromTag: fresh('t'),
      });
      c.send(udpPort, text);
      const first = await c.response();
      expect(first.status).toBe(401);
      expect(first.header('to')).toMatch(/;tag=/);
      // Later than the millisecond (and the second) it was first answered in.
      await new Promise((r) => setTimeout(r, 1100));
      c.send(udpPort, text);
      const again = await c.response();
      expect(again.head).toBe(first.head);
      expect(again.body).toBe(first.body);
      // A new request (another branch) is challenged afresh.
      register(c, udpPort, { user: 'alice', domain: srv.domain, cseq: 2, callId });
      const other = await c.response();
      expect(other.status).toBe(401);
      expect(other.header('www-authenticate')).not.toBe(first.header('www-authenticate'));
      expect(other.header('to')).not.toBe(first.header('to'));
      // The repeated challenge is one the client can answer.
      const auth = digestAnswer(again.header('www-authenticate') ?? '', {
        user: 'alice',
        password: 'alice-pw',
        method: 'REGISTER',
        uri: `sip:${srv.domain}`,
      });
      register(c, udpPort, { user: 'alice', domain: srv.domain, cseq: 3, auth, callId });
      expect((await c.response()).status).toBe(200);
    } finally {
      c.close();
    }
  });

  it('answers a retransmitted MESSAGE without credentials with the same 407, byte for byte', async () => {
    const c = await UdpClient.open();
    try {
      const text = [
        `MESSAGE sip:bob@${srv.domain} SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${c.port};branch=${fresh('z9hG4bK')};rport`,
        'Max-Forwards: 70',
        `From: <sip:alice@${srv.domain}>;tag=${fresh('t')}`,
        `To: <sip:bob@${srv.domain}>`,
        `Call-ID: ${fresh('msg')}`,
        'CSeq: 1 MESSAGE',
        'Content-Type: text/plain',
        'Content-Length: 2',
        '',
        'hi',
      ].join('\r\n');
      c.send(udpPort, text);
      const first = await c.response();
      expect(first.status).toBe(407);
      await new Promise((r) => setTimeout(r, 600));
      c.send(udpPort, text);
      const again = await c.response();
      expect(again.head).toBe(first.head);
      expect(again.body).toBe(first.body);
    } finally {
      c.close();
    }
  });

  it('SIPp registering over UDP through server stalls: its retransmissions get the same challenge and no call fails', async () => {
    const users = Array.from({ length: 60 }, (_, i) => `stall${i}`);
    for (const user of users) await srv.addUser(user, 'secret');
    const run = runSipp([
      `127.0.0.1:${udpPort}`,
      ...[
        '-sf',
        join(SIPP_SCENARIOS, 'register-auth.xml'),
        '-t',
        'u1',
        '-i',
        '127.0.0.1',
        '-p',
        String(await freePort()),
      ],
      ...['-inf', injectionFile(users.map((user) => ({ user, password: 'secret', domain: srv.domain })))],
      ...['-m', String(users.length), '-r', '40', '-timeout', '30s', '-timeout_error'],
    ]);
    // The server shares this thread: hold it twice for longer than T1 (500 ms) while SIPp
    // sends, so SIPp retransmits REGISTERs the server has not read yet.
    for (const at of [400, 600]) {
      await new Promise((r) => setTimeout(r, at));
      const until = Date.now() + 1_200;
      while (Date.now() < until) {
        // stalled
      }
    }
    const done = await run;
    expect(done.code, done.stdout + done.stderr).toBe(0);
  }, 60_000);

  it('answers NAT keep-alives: a STUN Binding request and a double CRLF (RFC 5626 4.4)', async () => {
    const c = await UdpClient.open();
    try {
      const stun = Buffer.alloc(20);
      stun.writeUInt16BE(0x0001, 0);
      stun.writeUInt32BE(0x2112a442, 4);
      Buffer.from('parley-udp-1').copy(stun, 8);
      c.send(udpPort, stun);
      const answer = await c.next((m): m is Buffer => Buffer.isBuffer(m) && m.length >= 20);
      expect(answer.readUInt16BE(0)).toBe(0x0101);
      expect(answer.readUInt16BE(26) ^ 0x2112).toBe(c.port);
      c.send(udpPort, Buffer.from('\r\n\r\n'));
      const pong = await c.next((m): m is Buffer => Buffer.isBuffer(m) && m.toString() === '\r\n');
      expect(pong.toString()).toBe('\r\n');
    } finally {
      c.close();
    }
  });

  it('retransmits a MESSAGE to a UDP client that does not answer (Timer E) and stops at its 200', async () => {
    const bob = await UdpClient.open();
    const alice = await TestClient.signIn(`ws://127.0.0.1:${srv.wsPort}`, 'alice', srv.domain, 'alice-pw');
    try {
      expect((await signIn(bob, udpPort, 'bob', srv.domain, 'bob-pw')).status).toBe(200);
      const sent = alice.sendMessage(`bob@${srv.domain}`, 'are you there?');
      const first = await bob.request('MESSAGE');
      const again = await bob.request('MESSAGE', 1500);
      expect(again.header('via')).toBe(first.header('via'));
      expect(again.body).toBe('are you there?');
      bob.send(udpPort, answerText(again));
      await sent;
      await new Promise((r) => setTimeout(r, 2500));
      expect(bob.received.filter((m) => m instanceof RawMessage && m.method === 'MESSAGE')).toHaveLength(0);
    } finally {
      bob.close();
      await alice.stop();
    }
  });

  it('sends a request over 1,300 bytes over TCP to the UDP client address (RFC 3261 18.1.1)', async () => {
    // Carol listens on TCP and UDP on one port, as SIP clients do.
    const tcp = createServer();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
    const port = (tcp.address() as AddressInfo).port;
    const carol = await UdpClient.open(port);
    const alice = await TestClient.signIn(`ws://127.0.0.1:${srv.wsPort}`, 'alice', srv.domain, 'alice-pw');
    let stream = '';
    const accepted: Socket[] = [];
    tcp.on('connection', (s) => {
      accepted.push(s);
      s.on('data', (d: Buffer) => {
        stream += d.toString('utf8');
        const end = stream.indexOf('\r\n\r\n');
        if (end < 0) return;
        const req = new RawMessage(stream.slice(0, end), stream.slice(end + 4));
        if (req.method === 'MESSAGE' && req.body.length >= Number(req.header('content-length'))) {
          s.write(answerText(req));
        }
      });
    });
    try {
      expect((await signIn(carol, udpPort, 'carol', srv.domain, 'carol-pw')).status).toBe(200);
      const big = 'x'.repeat(1500);
      await alice.sendMessage(`carol@${srv.domain}`, big);
      expect(stream).toMatch(/^MESSAGE sip:carol@127\.0\.0\.1/);
      expect(stream).toMatch(/Via: SIP\/2\.0\/TCP /);
      expect(stream).toContain(big);
      expect(carol.received.filter((m) => m instanceof RawMessage && m.method === 'MESSAGE')).toHaveLength(0);
      // A small one stays on UDP.
      const small = alice.sendMessage(`carol@${srv.domain}`, 'short');
      const udp = await carol.request('MESSAGE');
      carol.send(udpPort, answerText(udp));
      await small;
    } finally {
      for (const s of accepted) s.destroy();
      tcp.close();
      carol.close();
      await alice.stop();
    }
  });
});

function answerText(request: RawMessage): string {
  const copy = (name: string) => request.headers(name).map((v) => `${name}: ${v}`);
  return [
    'SIP/2.0 200 OK',
    ...copy('Via'),
    ...copy('From'),
    `To: ${request.header('to')};tag=${fresh('a')}`,
    ...copy('Call-ID'),
    ...copy('CSeq'),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}
