import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore } from '../../src/store/store.js';
import { digestAnswer, fresh, type RawMessage, RawSipClient } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

const PIDF = (entity: string, basic: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${entity}"><tuple id="t1"><status><basic>${basic}</basic></status></tuple></presence>`;

/**
 * One endpoint over a raw TCP socket: it answers every request it gets (NOTIFY, MESSAGE) with
 * 200 and keeps them, and signs its own requests with digest when challenged.
 */
class Endpoint {
  readonly received: RawMessage[] = [];
  private cseq = 1;
  readonly registerCallId = fresh('reg');

  private constructor(
    readonly c: RawSipClient,
    readonly user: string,
    readonly domain: string,
    public userAgent: string | undefined,
  ) {}

  static async open(port: number, user: string, domain: string, userAgent?: string): Promise<Endpoint> {
    return new Endpoint(await RawSipClient.open(port), user, domain, userAgent);
  }

  /** The next response; requests met on the way are answered and kept. */
  async response(timeoutMs = 3000): Promise<RawMessage> {
    for (;;) {
      const m = await this.c.next(timeoutMs);
      if (m.method !== undefined) this.answer(m);
      else if (m.status !== 100) return m;
    }
  }

  /** The next request matching, answering every request met. */
  async request(match: (m: RawMessage) => boolean, timeoutMs = 3000): Promise<RawMessage> {
    const kept = this.received.find(match);
    if (kept) {
      this.received.splice(this.received.indexOf(kept), 1);
      return kept;
    }
    for (;;) {
      const m = await this.c.next(timeoutMs);
      if (m.method === undefined) continue;
      this.answer(m);
      if (match(m)) {
        this.received.splice(this.received.indexOf(m), 1);
        return m;
      }
    }
  }

  private answer(m: RawMessage): void {
    this.received.push(m);
    const keep = m.head.split('\r\n').filter((l) => /^(via|from|to|call-id|cseq):/i.test(l));
    this.c.send(`SIP/2.0 200 OK\r\n${keep.join('\r\n')}\r\nContent-Length: 0\r\n\r\n`);
  }

  private build(
    method: string,
    uri: string,
    o: { callId: string; to?: string; headers?: string[]; body?: string; auth?: string; authHeader?: string },
  ): string {
    const body = o.body ?? '';
    return [
      `${method} ${uri} SIP/2.0`,
      `Via: SIP/2.0/TCP 127.0.0.1:${this.c.localPort};branch=${fresh('z9hG4bK')}`,
      'Max-Forwards: 70',
      `From: <sip:${this.user}@${this.domain}>;tag=${this.user}-${o.callId}`,
      `To: <${o.to ?? `sip:${this.user}@${this.domain}`}>`,
      `Call-ID: ${o.callId}`,
      `CSeq: ${this.cseq++} ${method}`,
      `Contact: <sip:${this.user}@127.0.0.1:${this.c.localPort};transport=tcp>`,
      ...(this.userAgent ? [`User-Agent: ${this.userAgent}`] : []),
      ...(o.headers ?? []),
      ...(o.auth ? [`${o.authHeader}: ${o.auth}`] : []),
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n');
  }

  /** Sends a request, answers a 401/407 challenge once, returns the final response. */
  async send(
    method: string,
    uri: string,
    o: { callId?: string; to?: string; headers?: string[]; body?: string; challenge?: boolean } = {},
  ): Promise<RawMessage> {
    const callId = o.callId ?? fresh(method.toLowerCase());
    this.c.send(this.build(method, uri, { ...o, callId }));
    const first = await this.response();
    if ((first.status !== 401 && first.status !== 407) || o.challenge === false) return first;
    const challenge = first.header(first.status === 401 ? 'www-authenticate' : 'proxy-authenticate') ?? '';
    const auth = digestAnswer(challenge, { user: this.user, password: 'secret', method, uri });
    this.c.send(
      this.build(method, uri, {
        ...o,
        callId,
        auth,
        authHeader: first.status === 401 ? 'Authorization' : 'Proxy-Authorization',
      }),
    );
    return this.response();
  }

  register(challenge = true): Promise<RawMessage> {
    return this.send('REGISTER', `sip:${this.domain}`, {
      callId: this.registerCallId,
      headers: ['Expires: 600'],
      challenge,
    });
  }
}

/**
 * A client version rule that changes while an endpoint is signed in: its next REGISTER refresh
 * is refused (403), and that ends its binding, its publication and its subscriptions at once,
 * not at expiry; whatever it sends on afterwards is refused, User-Agent or not.
 */
describe('a refused REGISTER refresh ends the endpoint at once', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    for (const name of ['dave', 'erin', 'probe']) await t.addUser(name, 'secret');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('signs the endpoint out, tells its watchers, ends its subscriptions and refuses its MESSAGE', async () => {
    const d = t.domain;
    const dave = await Endpoint.open(t.tcpPort, 'dave', d, 'OldClient/1.0');
    const erin = await Endpoint.open(t.tcpPort, 'erin', d, 'GoodClient/2.0');
    expect((await dave.register()).status).toBe(200);
    expect((await erin.register()).status).toBe(200);

    // dave publishes "open" and watches erin; erin watches dave.
    const published = await dave.send('PUBLISH', `sip:dave@${d}`, {
      headers: ['Event: presence', 'Expires: 600', 'Content-Type: application/pidf+xml'],
      body: PIDF(`sip:dave@${d}`, 'open'),
    });
    expect(published.status).toBe(200);
    const daveWatch = await dave.send('SUBSCRIBE', `sip:erin@${d}`, {
      to: `sip:erin@${d}`,
      headers: ['Event: presence', 'Accept: application/pidf+xml', 'Expires: 600'],
    });
    expect(daveWatch.status).toBe(200);
    await dave.request((m) => m.method === 'NOTIFY');
    const erinWatch = await erin.send('SUBSCRIBE', `sip:dave@${d}`, {
      to: `sip:dave@${d}`,
      headers: ['Event: presence', 'Accept: application/pidf+xml', 'Expires: 600'],
    });
    expect(erinWatch.status).toBe(200);
    await erin.request((m) => m.method === 'NOTIFY' && /<basic>open<\/basic>/.test(m.body));
    expect(await readMetric(t.server.httpUrl, 'parley_registered_endpoints')).toBe(2);

    // The administrator blocks dave's client; the server follows the store's feed.
    await createStore(t.server.db).clientPolicies.add({
      product: 'OldClient',
      versions: '*',
      action: 'block',
      reason: 'retired',
    });
    const probe = await Endpoint.open(t.tcpPort, 'probe', d, 'OldClient/1.0');
    await expect.poll(async () => (await probe.register()).status, { timeout: 10_000 }).toBe(403);
    probe.c.close();
    // Nothing happened to dave yet: the rule bites at his next refresh.
    expect(await readMetric(t.server.httpUrl, 'parley_registered_endpoints')).toBe(2);

    const refresh = await dave.register(false);
    expect(refresh.status).toBe(403);
    expect(refresh.header('warning')).toMatch(/OldClient 1\.0 is not allowed: retired/);

    // At once: erin sees dave offline, dave's watch of erin ends with rejected (RFC 6665: do not retry).
    const closed = await erin.request((m) => m.method === 'NOTIFY' && /<basic>closed<\/basic>/.test(m.body));
    expect(closed.header('subscription-state')).toMatch(/^active/);
    const ended = await dave.request(
      (m) => m.method === 'NOTIFY' && /terminated/.test(m.header('subscription-state') ?? ''),
    );
    expect(ended.header('subscription-state')).toMatch(/terminated;\s*reason=rejected/);
    expect(await readMetric(t.server.httpUrl, 'parley_registered_endpoints')).toBe(1);

    // A MESSAGE to dave finds no endpoint; one from dave's flow is refused even without a User-Agent.
    const toDave = await erin.send('MESSAGE', `sip:dave@${d}`, {
      to: `sip:dave@${d}`,
      headers: ['Content-Type: text/plain'],
      body: 'still there?',
    });
    expect(toDave.status).toBe(480);
    dave.userAgent = undefined;
    const fromDave = await dave.send('MESSAGE', `sip:erin@${d}`, {
      to: `sip:erin@${d}`,
      headers: ['Content-Type: text/plain'],
      body: 'hello',
    });
    expect(fromDave.status).toBe(403);
    const again = await dave.send('SUBSCRIBE', `sip:erin@${d}`, {
      to: `sip:erin@${d}`,
      headers: ['Event: presence', 'Expires: 600'],
    });
    expect(again.status).toBe(403);
    dave.c.close();
    erin.c.close();
  });
});
