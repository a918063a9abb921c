import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startTestServer, type TestServer } from '../support/server.js';

/** A raw TCP client that collects what the server sends back. */
class RawClient {
  private buffer = '';
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('latin1');
    });
    socket.on('close', () => {
      this.closed = true;
    });
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  send(text: string): void {
    this.socket.write(text.replace(/\r?\n/g, '\r\n'));
  }

  /** Waits for a status line in what arrived since the last call. */
  async response(timeoutMs = 3000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 4);
        return head;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no response; buffer: ${JSON.stringify(this.buffer)}`);
  }

  /** What arrived and was not read as a response yet. */
  pending(): string {
    return this.buffer;
  }

  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }
}

function request(
  port: number,
  opts: {
    from?: string;
    startLine?: string;
    drop?: string;
    extra?: string;
    cseq?: string;
    contentLength?: string;
    body?: string;
  } = {},
) {
  const lines = [
    opts.startLine ?? `OPTIONS sip:127.0.0.1:${port} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKraw${Math.random().toString(36).slice(2)}`,
    opts.from ?? 'From: <sip:tester@example.com>;tag=raw1',
    'To: <sip:127.0.0.1>',
    `Call-ID: raw-${Math.random().toString(36).slice(2)}`,
    `CSeq: ${opts.cseq ?? '1 OPTIONS'}`,
    'Max-Forwards: 70',
  ].filter((l) => !opts.drop || !l.toLowerCase().startsWith(opts.drop));
  if (opts.extra) lines.push(opts.extra);
  const body = opts.body ?? '';
  lines.push(`Content-Length: ${opts.contentLength ?? Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

describe('malformed input from raw sockets', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('RFC 4475 insuf, regaut01 and an OPTIONS ping of the domain', async () => {
    const c = await RawClient.open(t.tcpPort);
    // insuf: no Call-ID, From or To; still answered 400 over the Via.
    c.send(
      request(t.tcpPort, { drop: 'call-id' })
        .replace(/^From:.*\r\n/m, '')
        .replace(/^To:.*\r\n/m, ''),
    );
    expect(await c.response()).toMatch(/^SIP\/2\.0 400 /);
    // regaut01: credentials in an unknown scheme get a fresh Digest challenge, not 400.
    c.send(
      request(t.tcpPort, {
        startLine: 'REGISTER sip:example.com SIP/2.0',
        cseq: '1 REGISTER',
        extra: 'Contact: <sip:j.user@127.0.0.1:5999>\r\nAuthorization: NoOneKnowsThisScheme opaque-data=here',
      }).replace('To: <sip:127.0.0.1>', 'To: <sip:tester@example.com>'),
    );
    const challenge = await c.response();
    expect(challenge).toMatch(/^SIP\/2\.0 401 /);
    expect(challenge).toMatch(/WWW-Authenticate: Digest /);
    // A load balancer pings the domain, not a server's address.
    c.send(request(t.tcpPort, { startLine: 'OPTIONS sip:example.com SIP/2.0' }));
    const pong = await c.response();
    expect(pong).toMatch(/^SIP\/2\.0 200 /);
    expect(pong).toMatch(/Allow: .*SUBSCRIBE/);
    expect(pong).toMatch(/Accept: .*application\/pidf\+xml/);
    expect(pong).toMatch(/Supported: path, outbound/);
    c.socket.destroy();
  });

  it('answers 400, 505 and 416 and keeps serving the same connection', async () => {
    const c = await RawClient.open(t.tcpPort);
    c.send(request(t.tcpPort, { from: 'From: <sip:tester@example.com;tag=raw1' }));
    expect(await c.response()).toMatch(/^SIP\/2\.0 400 /);
    // Without a Call-ID (RFC 4475 insuf) it is still answered 400 where a Via says where to.
    c.send(request(t.tcpPort, { drop: 'call-id' }));
    expect(await c.response()).toMatch(/^SIP\/2\.0 400 /);
    c.send(request(t.tcpPort, { startLine: `OPTIONS sip:127.0.0.1:${t.tcpPort} SIP/3.0` }));
    expect(await c.response()).toMatch(/^SIP\/2\.0 505 /);
    c.send(request(t.tcpPort, { startLine: 'OPTIONS mailto:someone@example.com SIP/2.0' }));
    expect(await c.response()).toMatch(/^SIP\/2\.0 416 /);
    c.send(request(t.tcpPort, { cseq: '1 INVITE' }));
    expect(await c.response()).toMatch(/^SIP\/2\.0 400 /);
    c.send(request(t.tcpPort, { cseq: 'abc OPTIONS' }));
    expect(await c.response()).toMatch(/^SIP\/2\.0 400 /);
    // And a well-formed request on the same connection is served.
    c.send(request(t.tcpPort));
    const ok = await c.response();
    expect(ok).toMatch(/^SIP\/2\.0 200 /);
    expect(ok).toMatch(/Allow: .*MESSAGE/);
    expect(c.closed).toBe(false);
    c.socket.destroy();
  });

  it('answers 483 when Max-Forwards is exhausted (RFC 3261 16.3 step 3)', async () => {
    const c = await RawClient.open(t.tcpPort);
    c.send(
      request(t.tcpPort, {
        startLine: 'MESSAGE sip:bob@example.com SIP/2.0',
        cseq: '1 MESSAGE',
        extra: 'X-Note: Max-Forwards below wins',
      }).replace('Max-Forwards: 70', 'Max-Forwards: 0'),
    );
    expect(await c.response()).toMatch(/^SIP\/2\.0 483 /);
    c.socket.destroy();
  });

  it('relays nothing for strangers: a Route or an in-dialog request to another host is refused', async () => {
    let reached = 0;
    const bystander = createServer((s) => {
      reached++;
      s.destroy();
    });
    await new Promise<void>((r) => bystander.listen(0, '127.0.0.1', () => r()));
    const port = (bystander.address() as AddressInfo).port;
    try {
      const c = await RawClient.open(t.tcpPort);
      c.send(request(t.tcpPort, { extra: `Route: <sip:127.0.0.1:${port};lr>` }));
      expect(await c.response()).toMatch(/^SIP\/2\.0 40[37] /);
      c.send(
        request(t.tcpPort, {
          startLine: `MESSAGE sip:someone@127.0.0.1:${port} SIP/2.0`,
          cseq: '1 MESSAGE',
        }).replace('To: <sip:127.0.0.1>', 'To: <sip:someone@127.0.0.1>;tag=made-up'),
      );
      expect(await c.response()).toMatch(/^SIP\/2\.0 40[37] /);
      await new Promise((r) => setTimeout(r, 200));
      expect(reached).toBe(0);
      c.socket.destroy();
    } finally {
      bystander.close();
    }
  });

  it('does not let a made-up To tag skip authentication', async () => {
    const c = await RawClient.open(t.tcpPort);
    c.send(
      request(t.tcpPort, { startLine: 'MESSAGE sip:bob@example.com SIP/2.0', cseq: '1 MESSAGE' }).replace(
        'To: <sip:127.0.0.1>',
        'To: <sip:bob@example.com>;tag=made-up',
      ),
    );
    expect(await c.response()).toMatch(/^SIP\/2\.0 407 /);
    c.socket.destroy();
  });

  it('answers keep-alive pings with a pong', async () => {
    const c = await RawClient.open(t.tcpPort);
    const got = new Promise<string>((resolve) => c.socket.once('data', (d: Buffer) => resolve(d.toString())));
    c.socket.write('\r\n\r\n');
    expect(await got).toBe('\r\n');
    c.socket.destroy();
  });

  it('closes a stream it cannot resynchronise, after answering', async () => {
    const c = await RawClient.open(t.tcpPort);
    c.send(request(t.tcpPort, { contentLength: '-5' }));
    expect(await c.response()).toMatch(/^SIP\/2\.0 400 /);
    expect(await c.waitClosed()).toBe(true);
  });

  it('drops garbage and binary noise without answering and keeps serving others', async () => {
    const c = await RawClient.open(t.tcpPort);
    c.socket.write(Buffer.from([0, 1, 2, 3, 255, 254, 13, 10, 13, 10]));
    c.socket.write('HELLO THERE\r\n\r\n');
    // Binary junk cannot be resynchronised: the connection is closed without an answer.
    expect(await c.waitClosed()).toBe(true);
    expect(c.pending()).toBe('');
    const other = await RawClient.open(t.tcpPort);
    other.send(request(t.tcpPort));
    expect(await other.response()).toMatch(/^SIP\/2\.0 200 /);
    other.socket.destroy();
    c.socket.destroy();
  });

  it('survives an oversized message', async () => {
    const c = await RawClient.open(t.tcpPort);
    c.send(request(t.tcpPort, { extra: `X-Big: ${'a'.repeat(100_000)}` }));
    expect(await c.waitClosed()).toBe(true);
    const other = await RawClient.open(t.tcpPort);
    other.send(request(t.tcpPort));
    expect(await other.response()).toMatch(/^SIP\/2\.0 200 /);
    other.socket.destroy();
  });

  it('answers a malformed message on a WebSocket and keeps the socket open', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${t.wsPort}`, 'sip');
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    const replies: string[] = [];
    ws.on('message', (d: Buffer) => replies.push(d.toString()));
    ws.send(request(t.wsPort, { from: 'From: <sip:tester@example.com;tag=raw1' }));
    ws.send('complete nonsense');
    ws.send(request(t.wsPort));
    const deadline = Date.now() + 3000;
    while (replies.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(replies[0]).toMatch(/^SIP\/2\.0 400 /);
    expect(replies[1]).toMatch(/^SIP\/2\.0 200 /);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close();
  });
});
