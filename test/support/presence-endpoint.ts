import { digestAnswer, fresh, type RawMessage, RawSipClient } from './raw-sip.js';

export interface SubscriptionDialog {
  callId: string;
  fromTag: string;
  toTag: string;
}

/** A NOTIFY as the endpoint received it, with when. */
export interface ReceivedNotify {
  message: RawMessage;
  at: number;
}

/**
 * A presence endpoint on a raw TCP connection (RawSipClient, written from the RFCs, not from
 * our stack): it answers every request the server sends with 200, records NOTIFYs with their
 * arrival time, and authenticates its own requests with digest on the first challenge.
 */
export class PresenceEndpoint {
  readonly notifies: ReceivedNotify[] = [];
  private readonly responses = new Map<string, (m: RawMessage) => void>();
  private readonly waiters = new Set<() => void>();
  private cseq = 0;
  /** The dialog of the last answered request (its To tag from the answer). */
  lastDialog?: SubscriptionDialog;

  private constructor(
    readonly client: RawSipClient,
    readonly user: string,
    readonly domain: string,
    private readonly password: string,
  ) {
    void this.pump();
  }

  static async open(port: number, user: string, domain: string, password: string): Promise<PresenceEndpoint> {
    return new PresenceEndpoint(await RawSipClient.open(port), user, domain, password);
  }

  get aor(): string {
    return `${this.user}@${this.domain}`;
  }

  get closed(): boolean {
    return this.client.closed;
  }

  close(): void {
    this.client.close();
  }

  private async pump(): Promise<void> {
    while (!this.client.closed) {
      let m: RawMessage;
      try {
        m = await this.client.next(60_000);
      } catch {
        continue;
      }
      if (m.status !== undefined) {
        if (m.status >= 200) this.responses.get(`${m.header('call-id')} ${m.header('cseq')}`)?.(m);
        continue;
      }
      const at = Date.now();
      const keep = m.head
        .split('\r\n')
        .filter((l) => /^(via|from|to|call-id|cseq):/i.test(l))
        .map((l) => (/^to:/i.test(l) && !/;tag=/.test(l) ? `${l};tag=ep` : l));
      this.client.send(['SIP/2.0 200 OK', ...keep, 'Content-Length: 0', '', ''].join('\r\n'));
      if (m.method === 'NOTIFY') this.notifies.push({ message: m, at });
      for (const w of this.waiters) w();
    }
    for (const w of this.waiters) w();
  }

  /** Sends the request (again with credentials when challenged); resolves with the final response. */
  async request(
    method: string,
    ruri: string,
    opts: { to?: string; headers?: string[]; body?: string; dialog?: SubscriptionDialog } = {},
  ): Promise<RawMessage> {
    const callId = opts.dialog?.callId ?? fresh('c');
    const fromTag = opts.dialog?.fromTag ?? fresh('t');
    const toTag = opts.dialog ? `;tag=${opts.dialog.toTag}` : '';
    const send = (auth?: string) => {
      const cseq = ++this.cseq;
      const port = this.client.localPort;
      const body = opts.body ?? '';
      const answer = new Promise<RawMessage>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to ${method}`)), 10_000);
        this.responses.set(`${callId} ${cseq} ${method}`, (m) => {
          clearTimeout(timer);
          this.lastDialog = {
            callId,
            fromTag,
            toTag: /;tag=([^;>\s]+)/.exec(m.header('to') ?? '')?.[1] ?? '',
          };
          resolve(m);
        });
      });
      this.client.send(
        [
          `${method} ${ruri} SIP/2.0`,
          `Via: SIP/2.0/TCP 127.0.0.1:${port};branch=z9hG4bK${fresh('b')};rport`,
          'Max-Forwards: 70',
          `From: <sip:${this.aor}>;tag=${fromTag}`,
          `To: <sip:${opts.to ?? this.aor}>${toTag}`,
          `Call-ID: ${callId}`,
          `CSeq: ${cseq} ${method}`,
          `Contact: <sip:${this.user}@127.0.0.1:${port};transport=tcp>`,
          ...(opts.headers ?? []),
          ...(auth ? [auth] : []),
          `Content-Length: ${Buffer.byteLength(body)}`,
          '',
          body,
        ].join('\r\n'),
      );
      return answer;
    };
    const first = await send();
    if (first.status !== 401 && first.status !== 407) return first;
    const header = first.status === 401 ? 'www-authenticate' : 'proxy-authenticate';
    const digest = digestAnswer(first.header(header) ?? '', {
      user: this.user,
      password: this.password,
      method,
      uri: ruri,
    });
    return send(`${first.status === 401 ? 'Authorization' : 'Proxy-Authorization'}: ${digest}`);
  }

  async register(): Promise<number> {
    return (await this.request('REGISTER', `sip:${this.domain}`, { headers: ['Expires: 600'] })).status ?? 0;
  }

  /** SUBSCRIBE to a presentity's presence; `event` replaces the Event header value (parameters). */
  subscribe(target: string, event = 'presence'): Promise<RawMessage> {
    return this.request('SUBSCRIBE', `sip:${target}`, {
      to: target,
      headers: [`Event: ${event}`, 'Accept: application/pidf+xml', 'Expires: 600'],
    });
  }

  /** Ends a subscription inside its dialog (RFC 6665 4.1.2.3: Expires 0). */
  unsubscribe(target: string, dialog: SubscriptionDialog): Promise<RawMessage> {
    return this.request('SUBSCRIBE', `sip:${target}`, {
      to: target,
      dialog,
      headers: ['Event: presence', 'Expires: 0'],
    });
  }

  /** An initial PUBLISH; refresh with `etag` (SIP-If-Match). Resolves with the response. */
  publish(body: string, etag?: string): Promise<RawMessage> {
    return this.request('PUBLISH', `sip:${this.aor}`, {
      headers: [
        'Event: presence',
        'Expires: 600',
        'Content-Type: application/pidf+xml',
        ...(etag ? [`SIP-If-Match: ${etag}`] : []),
      ],
      body,
    });
  }

  /** The NOTIFYs received so far from `from`. */
  notifiesFrom(from: string): ReceivedNotify[] {
    return this.notifies.filter((n) => (n.message.header('from') ?? '').includes(`sip:${from}`));
  }

  /** The first NOTIFY (received or coming) from `from` that passes the test. */
  async notify(from: string, test: (m: RawMessage) => boolean, timeoutMs = 10_000): Promise<ReceivedNotify> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.notifiesFrom(from).find((n) => test(n.message));
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `no matching NOTIFY from ${from}; got ${this.notifies.map((n) => n.message.head).join('\n---\n')}`,
        );
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }
}
