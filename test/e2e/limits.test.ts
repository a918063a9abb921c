import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type DeepPartial, loadConfig, type ParleyConfig } from '../../src/ops/config.js';
import { computeHa1 } from '../../src/registrar/digest.js';
import { type ParleyServer, startServer } from '../../src/roles/server.js';
import { UserRepository } from '../../src/store/users.js';

/**
 * Connection limits seen from outside (security issue, point 3): raw sockets from several
 * loopback addresses (Linux routes all of 127/8 to lo, so each is its own "client").
 */

interface Started {
  server: ParleyServer;
  tcpPort: number;
  wsPort: number;
  /** JSON log lines the server wrote (info and above). */
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

async function start(limits: DeepPartial<ParleyConfig['limits']>): Promise<Started> {
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-limits-'));
  const config = loadConfig({
    cwd: dataDir,
    env: {},
    overrides: {
      domain: 'example.com',
      serverId: 'limits',
      listen: { tcp: { host: '0.0.0.0', port: 0 }, ws: { host: '0.0.0.0', port: 0 } },
      http: { host: '127.0.0.1', port: 0 },
      database: { dataDir },
      limits,
    },
  });
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const server = await startServer(config, { log: pino({ level: 'info' }, sink) });
  return {
    server,
    logs,
    tcpPort: server.listening.find((l) => l.transport === 'tcp')?.port ?? 0,
    wsPort: server.listening.find((l) => l.transport === 'ws')?.port ?? 0,
    async stop() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A raw TCP connection from a chosen loopback address, keeping what the server sends. */
class Conn {
  received = '';
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received += d.toString('latin1');
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }

  static open(port: number, from = '127.0.0.1'): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => resolve(new Conn(s)));
      s.once('error', reject);
    });
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The next response's head (status line and headers). */
  async response(timeoutMs = 3000): Promise<string> {
    await until(() => this.received.includes('\r\n\r\n') || this.closed, timeoutMs);
    const end = this.received.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`no response (closed: ${this.closed}): ${JSON.stringify(this.received)}`);
    const head = this.received.slice(0, end);
    this.received = this.received.slice(end + 4);
    return head;
  }

  /** True if the server closed the connection within the time. */
  async closedWithin(ms: number): Promise<boolean> {
    await until(() => this.closed, ms);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

async function until(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await sleep(20);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

let callIds = 0;
function options(port: number): string {
  const n = ++callIds;
  return [
    `OPTIONS sip:127.0.0.1:${port} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKlim${n}x${Date.now()}`,
    'From: <sip:tester@example.com>;tag=lim',
    'To: <sip:127.0.0.1>',
    `Call-ID: limits-${n}-${Date.now()}`,
    'CSeq: 1 OPTIONS',
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/** OPTIONS over a fresh connection from `from`: the status line, or why there was none. */
async function ping(port: number, from: string): Promise<string> {
  const c = await Conn.open(port, from);
  try {
    c.send(options(port));
    return (await c.response()).split('\r\n')[0];
  } catch (err) {
    return String(err);
  } finally {
    c.destroy();
  }
}

async function metric(server: ParleyServer, name: string, labels: string): Promise<number> {
  const text = await server.metrics.render();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('connection limits from raw sockets', { timeout: 60_000 }, () => {
  let t: Started;
  const conns: Conn[] = [];
  const open = async (from: string) => {
    const c = await Conn.open(t.tcpPort, from);
    conns.push(c);
    return c;
  };
  const closeAll = async () => {
    for (const c of conns.splice(0)) c.destroy();
    // Let the server see the closes (leases are released on its side's close events).
    await sleep(200);
  };

  beforeAll(async () => {
    t = await start({ maxConnectionsPerAddress: 3, maxConnections: 600, trustedProxies: ['127.0.0.3'] });
  });
  afterAll(async () => {
    for (const c of conns) c.destroy();
    await t?.stop();
  });

  it('refuses the fourth connection from one address while another address still connects', async () => {
    const first = [await open('127.0.0.1'), await open('127.0.0.1'), await open('127.0.0.1')];
    const fourth = await open('127.0.0.1');
    expect(await fourth.closedWithin(3000)).toBe(true);
    for (const c of first) expect(c.closed).toBe(false);
    // The three admitted connections are served ...
    first[2].send(options(t.tcpPort));
    expect(await first[2].response()).toMatch(/^SIP\/2\.0 200 /);
    // ... and so is another address.
    expect(await ping(t.tcpPort, '127.0.0.2')).toMatch(/^SIP\/2\.0 200 /);
    expect(await metric(t.server, 'parley_sip_connections_refused_total', 'reason="per_address"')).toBe(1);
    const refusal = t.logs.find((l) => l.reason === 'per_address');
    expect(refusal).toMatchObject({ level: 40, address: '127.0.0.1' });
    // Once one closes, the address may connect again.
    first[0].destroy();
    await sleep(200);
    expect(await ping(t.tcpPort, '127.0.0.1')).toMatch(/^SIP\/2\.0 200 /);
    await closeAll();
  });

  it('applies the per-address limit to WebSocket connections too', async () => {
    const sockets: WebSocket[] = [];
    const outcome = (ws: WebSocket) =>
      new Promise<string>((resolve) => {
        ws.once('open', () => resolve('open'));
        ws.once('error', () => resolve('refused'));
        ws.once('close', () => resolve('refused'));
      });
    const results: string[] = [];
    for (let i = 0; i < 4; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${t.wsPort}`, 'sip', { localAddress: '127.0.0.4' });
      sockets.push(ws);
      results.push(await outcome(ws));
    }
    expect(results).toEqual(['open', 'open', 'open', 'refused']);
    for (const ws of sockets) ws.terminate();
  });

  it('exempts an allow-listed load balancer from the per-address limit', async () => {
    const lb: Conn[] = [];
    for (let i = 0; i < 10; i++) lb.push(await open('127.0.0.3'));
    await sleep(200);
    expect(lb.filter((c) => c.closed)).toHaveLength(0);
    lb[9].send(options(t.tcpPort));
    expect(await lb[9].response()).toMatch(/^SIP\/2\.0 200 /);
    await closeAll();
  });

  it('takes the client address from a trusted PROXY header (v1 and v2) and limits that client', async () => {
    const proxied = async (header: Buffer | string) => {
      const c = await open('127.0.0.3');
      c.send(Buffer.concat([Buffer.from(header), Buffer.from(options(t.tcpPort))]));
      return c;
    };
    // Three connections for one client behind the balancer: its own limit of three applies.
    const v1 = (client: string, port: number) => `PROXY TCP4 ${client} 127.0.0.1 ${port} 5060\r\n`;
    const admitted = [
      await proxied(v1('198.51.100.7', 40001)),
      await proxied(v1('198.51.100.7', 40002)),
      await proxied(proxyV2('198.51.100.7', 40003)),
    ];
    for (const c of admitted) expect(await c.response()).toMatch(/^SIP\/2\.0 200 /);
    const before = await metric(t.server, 'parley_sip_connections_refused_total', 'reason="per_address"');
    const fourth = await proxied(v1('198.51.100.7', 40004));
    expect(await fourth.closedWithin(3000)).toBe(true);
    expect(fourth.received).toBe('');
    expect(await metric(t.server, 'parley_sip_connections_refused_total', 'reason="per_address"')).toBe(
      before + 1,
    );
    // Another client behind the same balancer is served.
    const other = await proxied(proxyV2('198.51.100.8', 40005));
    expect(await other.response()).toMatch(/^SIP\/2\.0 200 /);
    await closeAll();
  });

  it('refuses a PROXY header from an address that is not a trusted proxy', async () => {
    const before = await metric(t.server, 'parley_sip_connections_refused_total', 'reason="untrusted_proxy"');
    const c = await open('127.0.0.2');
    c.send(`PROXY TCP4 203.0.113.9 127.0.0.1 40000 5060\r\n${options(t.tcpPort)}`);
    expect(await c.closedWithin(3000)).toBe(true);
    expect(c.received).toBe('');
    expect(await metric(t.server, 'parley_sip_connections_refused_total', 'reason="untrusted_proxy"')).toBe(
      before + 1,
    );
    await closeAll();
  });

  it('keeps headroom: past the global limit SIP connections are refused, /health still answers', async () => {
    for (let i = 0; i < 600; i++) await open('127.0.0.3');
    const over = await open('127.0.0.5');
    expect(await over.closedWithin(3000)).toBe(true);
    expect(await metric(t.server, 'parley_sip_connections_refused_total', 'reason="global"')).toBeGreaterThan(
      0,
    );
    const health = await fetch(`${t.server.httpUrl}/health`);
    expect(health.status).toBe(200);
    // All at once: the server still answers promptly afterwards (behaviour, generous margin).
    for (const c of conns.splice(0)) c.destroy();
    let status = '';
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !status.startsWith('SIP/2.0 200')) {
      status = await ping(t.tcpPort, '127.0.0.5');
      if (!status.startsWith('SIP/2.0 200')) await sleep(50);
    }
    expect(status).toMatch(/^SIP\/2\.0 200 /);
    await sleep(300);
    expect(await metric(t.server, 'parley_sip_connections', '')).toBe(0);
  });
});

describe('header and idle timeouts from raw sockets', { timeout: 60_000 }, () => {
  let t: Started;
  beforeAll(async () => {
    t = await start({ headerTimeoutMs: 1000, idleTimeoutMs: 2500 });
    await new UserRepository(t.server.db)
      .createUser({ aor: 'alice@example.com', displayName: 'alice' })
      .then((u) =>
        new UserRepository(t.server.db).setCredentials(u.id, 'example.com', {
          ha1Md5: computeHa1('alice', 'example.com', 'secret', 'MD5'),
          ha1Sha256: computeHa1('alice', 'example.com', 'secret', 'SHA-256'),
        }),
      );
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('closes a slowloris connection (a byte every 500 ms) after the header timeout', async () => {
    const c = await Conn.open(t.tcpPort);
    const text = options(t.tcpPort);
    const started = Date.now();
    for (let i = 0; i < text.length && !c.closed; i++) {
      c.send(text[i]);
      await sleep(500);
      if (Date.now() - started > 10_000) break;
    }
    expect(c.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(6000);
    expect(c.received).toBe('');
  });

  it('closes a connection that sends nothing, or only keep-alives, after the header timeout', async () => {
    const silent = await Conn.open(t.tcpPort);
    const pinging = await Conn.open(t.tcpPort);
    const timer = setInterval(() => pinging.send('\r\n\r\n'), 200);
    try {
      expect(await silent.closedWithin(5000)).toBe(true);
      expect(await pinging.closedWithin(5000)).toBe(true);
    } finally {
      clearInterval(timer);
    }
  });

  it('closes a slow WebSocket upgrade after the header timeout', async () => {
    const c = await Conn.open(t.wsPort);
    c.send('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const timer = setInterval(() => c.send('X-Slow: 1\r\n'), 300);
    try {
      expect(await c.closedWithin(5000)).toBe(true);
    } finally {
      clearInterval(timer);
    }
  });

  it('serves a prompt client, then closes it when idle and unregistered', async () => {
    const c = await Conn.open(t.tcpPort);
    c.send(options(t.tcpPort));
    expect(await c.response()).toMatch(/^SIP\/2\.0 200 /);
    // Past the header timeout: a complete message stopped that clock.
    await sleep(1500);
    expect(c.closed).toBe(false);
    expect(await c.closedWithin(5000)).toBe(true);
    expect(
      await metric(t.server, 'parley_sip_connections_timed_out_total', 'reason="idle_timeout"'),
    ).toBeGreaterThan(0);
  });

  it('keeps a registered connection open past the idle timeout', async () => {
    const c = await Conn.open(t.tcpPort);
    const register = (n: number, authorization?: string) =>
      [
        'REGISTER sip:example.com SIP/2.0',
        `Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKreg${n}x${Date.now()}`,
        'From: <sip:alice@example.com>;tag=reg',
        'To: <sip:alice@example.com>',
        'Call-ID: limits-register',
        `CSeq: ${n} REGISTER`,
        'Contact: <sip:alice@127.0.0.1:5999;transport=tcp>',
        'Expires: 600',
        'Max-Forwards: 70',
        ...(authorization ? [`Authorization: ${authorization}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    c.send(register(1));
    const challenge = await c.response();
    expect(challenge).toMatch(/^SIP\/2\.0 401 /);
    const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1] ?? '';
    const realm = /realm="([^"]+)"/.exec(challenge)?.[1] ?? 'example.com';
    const md5 = (s: string) => createHash('md5').update(s).digest('hex');
    const ha1 = computeHa1('alice', realm, 'secret', 'MD5');
    const cnonce = 'c0ffee';
    const response = md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${md5('REGISTER:sip:example.com')}`);
    c.send(
      register(
        2,
        `Digest username="alice", realm="${realm}", nonce="${nonce}", uri="sip:example.com", ` +
          `response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`,
      ),
    );
    expect(await c.response()).toMatch(/^SIP\/2\.0 200 /);
    await sleep(4000);
    expect(c.closed).toBe(false);
    c.destroy();
  });
});

/** A PROXY protocol v2 header (PROXY command, TCP over IPv4). */
function proxyV2(client: string, port: number): Buffer {
  const header = Buffer.alloc(28);
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]).copy(header);
  header[12] = 0x21;
  header[13] = 0x11;
  header.writeUInt16BE(12, 14);
  client.split('.').forEach((octet, i) => {
    header[16 + i] = Number(octet);
  });
  [127, 0, 0, 1].forEach((octet, i) => {
    header[20 + i] = octet;
  });
  header.writeUInt16BE(port, 24);
  header.writeUInt16BE(5060, 26);
  return header;
}
