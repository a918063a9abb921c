import { connect, type Socket } from 'node:net';
import { digestAnswer, fresh, RawMessage } from '../support/raw-sip.js';

/**
 * A SIP client over TCP that behaves as an enterprise client does in a mixed legacy/pool
 * deployment: it asks the director where to register, follows the redirect (RFC 3261 8.1.3.4)
 * to its home, registers there, and when its home closes its connection (a sign-out) it asks
 * the director again, by itself. It answers the requests it gets (MESSAGE, NOTIFY) with 200
 * and keeps them, and sends MESSAGEs and SUBSCRIBEs with digest authentication.
 */
export class RoamingClient {
  readonly received: RawMessage[] = [];
  /** The home's TCP port it is registered with now (0 while it is not). */
  homePort = 0;
  /** Every home port it registered with, in order. */
  readonly homes: number[] = [];
  private socket?: Socket;
  private buffer = Buffer.alloc(0);
  private responses: Array<(m: RawMessage) => void> = [];
  private stopped = false;
  private cseq = 1;
  private readonly callId = fresh('roam');
  private readonly tag = fresh('t');
  private reconnecting?: Promise<void>;

  constructor(
    readonly user: string,
    readonly domain: string,
    private readonly password: string,
    private readonly directorPort: number,
    /** The address it connects from: not one the servers trust as a peer (trustedPeers). */
    private readonly localAddress = '127.0.0.1',
  ) {}

  get aor(): string {
    return `${this.user}@${this.domain}`;
  }

  /** Registers through the director; resolves once registered with the home it was sent to. */
  async signIn(): Promise<void> {
    const director = await this.open(this.directorPort);
    const answer = await this.register();
    director.destroy();
    if (answer.status !== 302) throw new Error(`${this.user}: director answered ${answer.startLine}`);
    const contact = answer.header('contact') ?? '';
    const port = Number(/:(\d+)[;>]/.exec(contact)?.[1]);
    const home = await this.open(port);
    const ok = await this.register();
    if (ok.status !== 200) {
      home.destroy();
      throw new Error(`${this.user}: home ${port} answered ${ok.startLine}`);
    }
    this.homePort = port;
    this.homes.push(port);
    home.once('close', () => {
      if (this.socket !== home || this.stopped) return;
      this.homePort = 0;
      // Signed out (or the home went away): ask the director again.
      this.reconnecting = this.retrySignIn();
    });
  }

  private async retrySignIn(): Promise<void> {
    for (let attempt = 0; !this.stopped && attempt < 50; attempt++) {
      await new Promise((r) => setTimeout(r, 100 + attempt * 50));
      try {
        await this.signIn();
        return;
      } catch {
        // The director or the home not ready for us yet: try again.
      }
    }
  }

  /** Sends a MESSAGE (authenticating on 407); resolves with the final status. */
  async message(to: string, body: string): Promise<number> {
    return (await this.request('MESSAGE', `sip:${to}`, { 'Content-Type': 'text/plain' }, body)).status ?? 0;
  }

  /** Sends a PUBLISH of a PIDF document for itself; resolves with the final status. */
  async publish(pidf: string): Promise<number> {
    const headers = { Event: 'presence', Expires: '600', 'Content-Type': 'application/pidf+xml' };
    return (await this.request('PUBLISH', `sip:${this.aor}`, headers, pidf)).status ?? 0;
  }

  /** Sends a SUBSCRIBE; resolves with the final response. */
  subscribe(to: string, event: string, accept: string): Promise<RawMessage> {
    return this.request('SUBSCRIBE', `sip:${to}`, { Event: event, Accept: accept, Expires: '300' }, '');
  }

  /** Requests received of a method, oldest first. */
  requests(method: string): RawMessage[] {
    return this.received.filter((m) => m.method === method);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.socket?.destroy();
    await this.reconnecting;
  }

  private async request(
    method: string,
    uri: string,
    headers: Record<string, string>,
    body: string,
    auth?: string,
  ): Promise<RawMessage> {
    const callId = fresh('req');
    const send = (authorization?: string) =>
      this.send(
        [
          `${method} ${uri} SIP/2.0`,
          `Via: SIP/2.0/TCP ${this.localAddress}:${this.socket?.localPort};branch=z9hG4bK${fresh('b')};rport`,
          `From: <sip:${this.aor}>;tag=${fresh('f')}`,
          `To: <${uri}>`,
          `Call-ID: ${callId}`,
          `CSeq: ${this.cseq++} ${method}`,
          `Contact: <sip:${this.user}@${this.localAddress}:${this.socket?.localPort};transport=tcp>`,
          'Max-Forwards: 70',
          ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
          ...(authorization ? [`Proxy-Authorization: ${authorization}`] : []),
          `Content-Length: ${Buffer.byteLength(body)}`,
          '',
          body,
        ].join('\r\n'),
      );
    send(auth);
    let res = await this.nextResponse();
    if (res.status === 407) {
      send(
        digestAnswer(res.header('proxy-authenticate') ?? '', {
          user: this.user,
          password: this.password,
          method,
          uri,
        }),
      );
      res = await this.nextResponse();
    }
    return res;
  }

  private async register(): Promise<RawMessage> {
    const uri = `sip:${this.domain}`;
    const send = (authorization?: string) =>
      this.send(
        [
          `REGISTER ${uri} SIP/2.0`,
          `Via: SIP/2.0/TCP ${this.localAddress}:${this.socket?.localPort};branch=z9hG4bK${fresh('r')};rport`,
          `From: <sip:${this.aor}>;tag=${this.tag}`,
          `To: <sip:${this.aor}>`,
          `Call-ID: ${this.callId}`,
          `CSeq: ${this.cseq++} REGISTER`,
          `Contact: <sip:${this.user}@${this.localAddress}:${this.socket?.localPort};transport=tcp>`,
          'Expires: 300',
          'Max-Forwards: 70',
          ...(authorization ? [`Authorization: ${authorization}`] : []),
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
    send();
    let res = await this.nextResponse();
    if (res.status === 401) {
      send(
        digestAnswer(res.header('www-authenticate') ?? '', {
          user: this.user,
          password: this.password,
          method: 'REGISTER',
          uri,
        }),
      );
      res = await this.nextResponse();
    }
    return res;
  }

  private open(port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', localAddress: this.localAddress }, () => {
        this.socket = s;
        this.buffer = Buffer.alloc(0);
        resolve(s);
      });
      s.once('error', reject);
      s.on('data', (d: Buffer) => {
        if (this.socket !== s) return;
        this.buffer = Buffer.concat([this.buffer, d]);
        this.pump();
      });
    });
  }

  private send(text: string): void {
    this.socket?.write(text);
  }

  private nextResponse(timeoutMs = 5000): Promise<RawMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.user}: no response`)), timeoutMs);
      this.responses.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  }

  private pump(): void {
    for (;;) {
      while (this.buffer.length >= 2 && this.buffer[0] === 13 && this.buffer[1] === 10)
        this.buffer = this.buffer.subarray(2);
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buffer.subarray(0, end).toString('utf8');
      const length = Number(/^(?:content-length|l)\s*:\s*(\d+)/im.exec(head)?.[1] ?? 0);
      if (this.buffer.length < end + 4 + length) return;
      const body = this.buffer.subarray(end + 4, end + 4 + length).toString('utf8');
      this.buffer = this.buffer.subarray(end + 4 + length);
      const m = new RawMessage(head, body);
      if (m.status !== undefined) {
        if (m.status >= 200) this.responses.shift()?.(m);
        continue;
      }
      this.received.push(m);
      if (m.method === 'ACK') continue;
      const copy = ['via', 'from', 'to', 'call-id', 'cseq'].flatMap((h) =>
        m
          .headers(h)
          .map(
            (v) =>
              `${h === 'call-id' ? 'Call-ID' : h === 'cseq' ? 'CSeq' : h[0].toUpperCase() + h.slice(1)}: ${v}`,
          ),
      );
      this.send(['SIP/2.0 200 OK', ...copy, 'Content-Length: 0', '', ''].join('\r\n'));
    }
  }
}
