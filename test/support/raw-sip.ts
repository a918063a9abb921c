import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';

/**
 * A SIP client over a raw TCP socket, written from the RFC rather than from our stack, so tests
 * speak to the server as an attacker or a foreign client would: what it sends is exactly what
 * the test wrote, and it reads whole messages by Content-Length.
 */
export class RawSipClient {
  private buffer = Buffer.alloc(0);
  private readonly waiting: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      for (const w of this.waiting.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawSipClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host, localAddress }, () => resolve(new RawSipClient(s)));
      s.once('error', reject);
    });
  }

  /** Over TLS, checked against `ca`; `cert`/`key` present a client certificate (mutual TLS). */
  static openTls(
    port: number,
    options: ConnectionOptions & { host?: string; localAddress?: string },
  ): Promise<RawSipClient> {
    return new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...options }, () =>
        resolve(new RawSipClient(s)),
      );
      s.once('error', reject);
    });
  }

  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  send(text: string): void {
    const [head, ...rest] = text.split(/\r?\n\r?\n/);
    const body = rest.join('\r\n\r\n');
    this.socket.write(`${head.replace(/\r?\n/g, '\r\n')}\r\n\r\n${body}`);
  }

  /** The next whole message (status or request line and headers, and its body). */
  async next(timeoutMs = 3000): Promise<RawMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = this.take();
      if (message) return message;
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`nothing within ${timeoutMs} ms; buffer: ${JSON.stringify(this.buffer.toString())}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiting.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next response, skipping requests and 100 Trying. */
  async response(timeoutMs = 3000): Promise<RawMessage> {
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m.status !== undefined && m.status !== 100) return m;
    }
  }

  /** Nothing arrives within the time: for "this was not forwarded" checks. */
  async silent(ms: number): Promise<boolean> {
    try {
      await this.next(ms);
      return false;
    } catch {
      return true;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private take(): RawMessage | undefined {
    while (this.buffer.length >= 2 && this.buffer[0] === 13 && this.buffer[1] === 10)
      this.buffer = this.buffer.subarray(2);
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const head = this.buffer.subarray(0, end).toString('utf8');
    const length = Number(/^(?:content-length|l)\s*:\s*(\d+)/im.exec(head)?.[1] ?? 0);
    if (this.buffer.length < end + 4 + length) return undefined;
    const body = this.buffer.subarray(end + 4, end + 4 + length).toString('utf8');
    this.buffer = this.buffer.subarray(end + 4 + length);
    return new RawMessage(head, body);
  }
}

export class RawMessage {
  readonly startLine: string;
  readonly status?: number;
  readonly method?: string;

  constructor(
    readonly head: string,
    readonly body: string,
  ) {
    this.startLine = head.split('\r\n')[0];
    const m = /^SIP\/2\.0 (\d{3})/.exec(this.startLine);
    if (m) this.status = Number(m[1]);
    else this.method = this.startLine.split(' ')[0];
  }

  header(name: string): string | undefined {
    return this.headers(name)[0];
  }

  headers(name: string): string[] {
    const out: string[] = [];
    for (const line of this.head.split('\r\n').slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name.toLowerCase())
        out.push(line.slice(colon + 1).trim());
    }
    return out;
  }
}

// RFC 7616 3.2 / RFC 8760 2: the algorithms' hash functions. A name outside the table (a made-up
// algorithm) is hashed with MD5 and sent under its own name.
const DIGEST_HASH: Record<string, string> = { MD5: 'md5', 'SHA-256': 'sha256', 'SHA-512-256': 'sha512-256' };

/**
 * An RFC 2617/7616 digest answer to a challenge, with qop=auth when offered; MD5 unless
 * `algorithm` names another (the challenge's own algorithm is not looked at, so a test can
 * answer in one that was not offered).
 */
export function digestAnswer(
  challenge: string,
  opts: {
    user: string;
    password: string;
    method: string;
    uri: string;
    nc?: number;
    cnonce?: string;
    algorithm?: string;
  },
): string {
  const algorithm = opts.algorithm ?? 'MD5';
  const h = (s: string) =>
    createHash(DIGEST_HASH[algorithm] ?? 'md5')
      .update(s)
      .digest('hex');
  const param = (name: string) => new RegExp(`${name}="?([^",]+)"?`).exec(challenge)?.[1] ?? '';
  const realm = param('realm');
  const nonce = param('nonce');
  const qop = /qop="?[^"]*\bauth\b/.test(challenge);
  const ha1 = h(`${opts.user}:${realm}:${opts.password}`);
  const ha2 = h(`${opts.method}:${opts.uri}`);
  const nc = (opts.nc ?? 1).toString(16).padStart(8, '0');
  const cnonce = opts.cnonce ?? randomBytes(6).toString('hex');
  const response = qop ? h(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`) : h(`${ha1}:${nonce}:${ha2}`);
  const base = `Digest username="${opts.user}", realm="${realm}", nonce="${nonce}", uri="${opts.uri}", response="${response}", algorithm=${algorithm}`;
  return qop ? `${base}, qop=auth, nc=${nc}, cnonce="${cnonce}"` : base;
}

/** A TCP listener that counts every connection and byte: the victim a relay must never reach. */
export class Sink {
  connections = 0;
  bytes = 0;
  private constructor(private readonly server: Server) {}

  static async start(host = '127.0.0.1'): Promise<Sink> {
    let sink!: Sink;
    const server = createServer((s) => {
      sink.connections++;
      s.on('data', (d: Buffer) => {
        sink.bytes += d.length;
      });
      s.on('error', () => undefined);
    });
    sink = new Sink(server);
    await new Promise<void>((r) => server.listen(0, host, () => r()));
    return sink;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

let seq = 0;
/** A fresh branch, tag or Call-ID. */
export function fresh(prefix: string): string {
  seq++;
  return `${prefix}${seq}${randomBytes(4).toString('hex')}`;
}
