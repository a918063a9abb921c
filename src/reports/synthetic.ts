import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { StreamFramer } from '../sip/framer.js';
import { createBranch, createTag } from '../sip/ids.js';
import { SipMessage } from '../sip/message.js';

/**
 * Synthetic transactions (`parley test sign-in|im|presence`): a small SIP user agent that
 * signs in as a real user against a live deployment and times each step, for an
 * administrator after a change and a monitor every minute. Written against the RFCs with
 * Parley's own message model, over TCP or TLS.
 */

export interface SyntheticStep {
  step: string;
  ok: boolean;
  ms: number;
  detail: string;
}

export interface SyntheticResult {
  test: 'sign-in' | 'im' | 'presence';
  ok: boolean;
  server: string;
  steps: SyntheticStep[];
}

export interface SyntheticAccount {
  aor: string;
  password: string;
}

export interface SyntheticOptions {
  /** sip:host:port;transport=tcp|tls */
  server: string;
  as: SyntheticAccount;
  /** The peer: its AOR, and its password when the test should sign it in and see the message arrive. */
  to?: { aor: string; password?: string };
  /** CA bundle for TLS servers (default: the system's). */
  ca?: string;
  timeoutMs?: number;
}

interface Target {
  host: string;
  port: number;
  transport: 'tcp' | 'tls';
}

/** `sip:host[:port][;transport=tcp|tls]` or `host:port`. */
export function parseServerTarget(text: string): Target | undefined {
  const m = /^(?:sips?:)?(\[[^\]]+\]|[^:;[\]]+)(?::(\d+))?(?:;transport=(tcp|tls))?$/i.exec(text.trim());
  if (!m) return undefined;
  const tls = /^sips:/i.test(text) || m[3]?.toLowerCase() === 'tls';
  return {
    host: m[1].replace(/^\[|\]$/g, ''),
    port: m[2] ? Number(m[2]) : tls ? 5061 : 5060,
    transport: tls ? 'tls' : 'tcp',
  };
}

/** A failed step: the message says what went wrong there. */
class StepFailure extends Error {}

class UserAgent {
  private readonly framer = new StreamFramer();
  private readonly waiting = new Map<string, (m: SipMessage) => void>();
  private readonly requestWaiters: Array<{
    test: (m: SipMessage) => boolean;
    resolve: (m: SipMessage) => void;
  }> = [];
  readonly received: SipMessage[] = [];
  private readonly tag = createTag();
  private readonly callIds = new Map<string, string>();
  private cseq = 1;
  private closed = false;
  private nc = 0;

  private constructor(
    private readonly socket: Duplex & { localAddress?: string; localPort?: number },
    private readonly target: Target,
    readonly account: SyntheticAccount,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => {
      for (const ev of this.framer.push(chunk)) if (ev.type === 'message') this.onMessage(ev.message);
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => undefined);
  }

  static connect(
    target: Target,
    account: SyntheticAccount,
    timeoutMs: number,
    ca?: string,
  ): Promise<UserAgent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new StepFailure(`no connection to ${target.host}:${target.port} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve(new UserAgent(socket, target, account, timeoutMs));
      };
      const socket =
        target.transport === 'tls'
          ? tlsConnect(
              {
                host: target.host,
                port: target.port,
                servername: target.host,
                ca: ca ? readFileSync(ca) : undefined,
              },
              onReady,
            )
          : tcpConnect({ host: target.host, port: target.port }, onReady);
      socket.once('error', (err) => {
        clearTimeout(timer);
        const refused = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
        reject(
          new StepFailure(
            `${target.host}:${target.port}: ${err.message}${refused ? ': nothing listens there; is the server running (`parley server status`), and is --server its address?' : ''}`,
          ),
        );
      });
    });
  }

  get domain(): string {
    return this.account.aor.split('@')[1];
  }

  get user(): string {
    return this.account.aor.split('@')[0];
  }

  private onMessage(m: SipMessage): void {
    if (!m.isRequest) {
      const key = `${m.callId} ${m.cseq.seq} ${m.cseq.method}`;
      if (m.status >= 200) this.waiting.get(key)?.(m);
      return;
    }
    // Requests to us (NOTIFY, MESSAGE): 200 OK (RFC 3261 8.2.6), then tell whoever waits.
    const ok = SipMessage.response(200, 'OK', [
      ...m.getAll('via').map((value) => ({ name: 'via', value })),
      { name: 'from', value: m.get('from') ?? '' },
      { name: 'to', value: m.to.tag ? (m.get('to') ?? '') : `${m.get('to') ?? ''};tag=${this.tag}` },
      { name: 'call-id', value: m.callId },
      { name: 'cseq', value: m.get('cseq') ?? '' },
      { name: 'content-length', value: '0' },
    ]);
    this.socket.write(ok.toBuffer());
    this.received.push(m);
    for (let i = this.requestWaiters.length - 1; i >= 0; i--) {
      const w = this.requestWaiters[i];
      if (w.test(m)) {
        this.requestWaiters.splice(i, 1);
        w.resolve(m);
      }
    }
  }

  waitForRequest(test: (m: SipMessage) => boolean, what: string): Promise<SipMessage> {
    const seen = this.received.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new StepFailure(`no ${what} within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      this.requestWaiters.push({
        test,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  private contact(): string {
    const host = this.socket.localAddress ?? '127.0.0.1';
    return `<sip:${this.user}@${host.includes(':') ? `[${host}]` : host}:${this.socket.localPort ?? 0};transport=${this.target.transport}>`;
  }

  /**
   * Sends a request in dialog `dialog` (a Call-ID kept per name), answering one digest
   * challenge (401/407) with the account's password; resolves with the final response.
   */
  async request(
    method: string,
    uri: string,
    opts: {
      dialog: string;
      to: string;
      headers?: Array<{ name: string; value: string }>;
      body?: string;
      toTag?: string;
    },
  ): Promise<SipMessage> {
    let callId = this.callIds.get(opts.dialog);
    if (!callId) {
      callId = `${randomBytes(8).toString('hex')}@parley-test`;
      this.callIds.set(opts.dialog, callId);
    }
    let auth: { name: string; value: string } | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      const seq = this.cseq++;
      const headers = [
        {
          name: 'via',
          value: `SIP/2.0/${this.target.transport.toUpperCase()} ${this.socket.localAddress ?? '127.0.0.1'}:${this.socket.localPort ?? 0};branch=${createBranch()};rport`,
        },
        { name: 'max-forwards', value: '70' },
        { name: 'from', value: `<sip:${this.account.aor}>;tag=${this.tag}` },
        { name: 'to', value: `<${opts.to}>${opts.toTag ? `;tag=${opts.toTag}` : ''}` },
        { name: 'call-id', value: callId },
        { name: 'cseq', value: `${seq} ${method}` },
        { name: 'contact', value: this.contact() },
        { name: 'user-agent', value: 'Parley-Test/1.0' },
        ...(opts.headers ?? []),
        ...(auth ? [auth] : []),
      ];
      const body = opts.body === undefined ? undefined : Buffer.from(opts.body, 'utf8');
      headers.push({ name: 'content-length', value: String(body?.length ?? 0) });
      const request = SipMessage.request(method, uri, headers, body);
      const response = await this.exchange(request, `${callId} ${seq} ${method}`);
      if ((response.status === 401 || response.status === 407) && attempt === 0) {
        const challenge =
          response.get(response.status === 401 ? 'www-authenticate' : 'proxy-authenticate') ?? '';
        auth = {
          name: response.status === 401 ? 'authorization' : 'proxy-authorization',
          value: this.answer(challenge, method, uri),
        };
        continue;
      }
      return response;
    }
    throw new StepFailure(`${method} was challenged again: wrong password for ${this.account.aor}?`);
  }

  private exchange(request: SipMessage, key: string): Promise<SipMessage> {
    if (this.closed) return Promise.reject(new StepFailure('the server closed the connection'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new StepFailure(`no final response to ${request.method} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting.set(key, (m) => {
        clearTimeout(timer);
        this.waiting.delete(key);
        resolve(m);
      });
      this.socket.write(request.toBuffer());
    });
  }

  /** RFC 7616 / RFC 2617 digest answer, qop=auth when offered, MD5 or SHA-256 as the challenge asks. */
  private answer(challenge: string, method: string, uri: string): string {
    const param = (name: string) => new RegExp(`${name}="?([^",]+)"?`, 'i').exec(challenge)?.[1] ?? '';
    const algorithm = /algorithm="?SHA-256/i.test(challenge) ? 'SHA-256' : 'MD5';
    const h = (s: string) =>
      createHash(algorithm === 'SHA-256' ? 'sha256' : 'md5')
        .update(s)
        .digest('hex');
    const realm = param('realm');
    const nonce = param('nonce');
    const qop = /qop="?[^"]*\bauth\b/i.test(challenge);
    const ha1 = h(`${this.user}:${realm}:${this.account.password}`);
    const ha2 = h(`${method}:${uri}`);
    const nc = (++this.nc).toString(16).padStart(8, '0');
    const cnonce = randomBytes(8).toString('hex');
    const response = qop ? h(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`) : h(`${ha1}:${nonce}:${ha2}`);
    const opaque = param('opaque');
    return `Digest username="${this.user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=${algorithm}${opaque ? `, opaque="${opaque}"` : ''}${qop ? `, qop=auth, nc=${nc}, cnonce="${cnonce}"` : ''}`;
  }

  close(): void {
    this.socket.destroy();
  }
}

const describe = (r: SipMessage) => `${r.status} ${r.reason}`.trim();

/** Runs one synthetic test; every step is timed, the first failure ends the run. */
export async function runSyntheticTest(
  test: SyntheticResult['test'],
  opts: SyntheticOptions,
): Promise<SyntheticResult> {
  const target = parseServerTarget(opts.server);
  const result: SyntheticResult = { test, ok: false, server: opts.server, steps: [] };
  if (!target) {
    result.steps.push({
      step: 'connect',
      ok: false,
      ms: 0,
      detail: `"${opts.server}" is not sip:host:port;transport=tcp|tls`,
    });
    return result;
  }
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const agents: UserAgent[] = [];
  const step = async <T>(name: string, fn: () => Promise<{ value: T; detail: string }>): Promise<T> => {
    const started = performance.now();
    try {
      const { value, detail } = await fn();
      result.steps.push({ step: name, ok: true, ms: Math.round(performance.now() - started), detail });
      return value;
    } catch (err) {
      result.steps.push({
        step: name,
        ok: false,
        ms: Math.round(performance.now() - started),
        detail: (err as Error).message,
      });
      throw new StepFailure('stop');
    }
  };
  const signIn = async (account: SyntheticAccount, label: string) => {
    const ua = await step(`connect${label}`, async () => ({
      value: await UserAgent.connect(target, account, timeoutMs, opts.ca),
      detail: `${target.transport.toUpperCase()} ${target.host}:${target.port}`,
    }));
    agents.push(ua);
    await step(`sign-in${label}`, async () => {
      const r = await ua.request('REGISTER', `sip:${ua.domain}`, {
        dialog: 'register',
        to: `sip:${account.aor}`,
        headers: [{ name: 'expires', value: '120' }],
      });
      if (r.status !== 200) {
        const answer = `REGISTER answered ${describe(r)}${r.get('warning') ? ` (${r.get('warning')})` : ''}`;
        throw new StepFailure(
          r.status === 401 || r.status === 407
            ? `${answer}: the password was refused, or there is no such user (the server logs why: event auth_failure); see \`parley users show ${account.aor}\`, or set it with \`parley users set-password ${account.aor}\``
            : answer,
        );
      }
      return { value: undefined, detail: `${account.aor} registered (${describe(r)})` };
    });
    return ua;
  };
  const signOut = async (ua: UserAgent, label: string) =>
    step(`sign-out${label}`, async () => {
      const r = await ua.request('REGISTER', `sip:${ua.domain}`, {
        dialog: 'register',
        to: `sip:${ua.account.aor}`,
        headers: [{ name: 'expires', value: '0' }],
      });
      if (r.status !== 200) throw new StepFailure(`REGISTER Expires: 0 answered ${describe(r)}`);
      return { value: undefined, detail: 'binding removed' };
    });

  try {
    const me = await signIn(opts.as, '');
    if (test === 'im') {
      const to = opts.to!;
      const peer = to.password
        ? await signIn({ aor: to.aor, password: to.password }, ` (${to.aor})`)
        : undefined;
      const text = `parley test im ${new Date().toISOString()} ${randomBytes(4).toString('hex')}`;
      await step('send message', async () => {
        const r = await me.request('MESSAGE', `sip:${to.aor}`, {
          dialog: 'message',
          to: `sip:${to.aor}`,
          headers: [{ name: 'content-type', value: 'text/plain' }],
          body: text,
        });
        if (r.status >= 300)
          throw new StepFailure(
            r.status === 480
              ? `${to.aor} is not signed in (480 ${r.reason})`
              : `MESSAGE answered ${describe(r)}`,
          );
        return { value: undefined, detail: `${to.aor} accepted it (${describe(r)})` };
      });
      if (peer) {
        await step('receive message', async () => {
          await peer.waitForRequest(
            (m) => m.method === 'MESSAGE' && m.body.toString('utf8') === text,
            'MESSAGE',
          );
          return { value: undefined, detail: `${to.aor} received it` };
        });
        await signOut(peer, ` (${to.aor})`);
      }
    } else if (test === 'presence') {
      const to = opts.to!;
      const subscribed = await step('subscribe', async () => {
        const r = await me.request('SUBSCRIBE', `sip:${to.aor}`, {
          dialog: 'subscribe',
          to: `sip:${to.aor}`,
          headers: [
            { name: 'event', value: 'presence' },
            { name: 'accept', value: 'application/pidf+xml' },
            { name: 'expires', value: '60' },
          ],
        });
        if (r.status >= 300) throw new StepFailure(`SUBSCRIBE answered ${describe(r)}`);
        return { value: r.to.tag, detail: `${describe(r)}` };
      });
      const notify = await step('notify', async () => {
        const n = await me.waitForRequest((m) => m.method === 'NOTIFY', 'NOTIFY');
        const state = n.get('subscription-state') ?? '';
        if (state.startsWith('terminated')) throw new StepFailure(`subscription ended at once: ${state}`);
        const basic = /<basic>\s*(open|closed)\s*<\/basic>/.exec(n.body.toString('utf8'))?.[1];
        return {
          value: n,
          detail: `${state.split(';')[0]}; ${to.aor} is ${basic === 'open' ? 'online' : basic === 'closed' ? 'offline' : 'not visible (no presence document)'}`,
        };
      });
      await step('unsubscribe', async () => {
        const r = await me.request(
          'SUBSCRIBE',
          notify.get('contact')?.replace(/^.*<([^>]+)>.*$/, '$1') ?? `sip:${to.aor}`,
          {
            dialog: 'subscribe',
            to: `sip:${to.aor}`,
            toTag: subscribed,
            headers: [
              { name: 'event', value: 'presence' },
              { name: 'expires', value: '0' },
            ],
          },
        );
        if (r.status >= 300) throw new StepFailure(`SUBSCRIBE Expires: 0 answered ${describe(r)}`);
        return { value: undefined, detail: describe(r) };
      });
    }
    await signOut(me, '');
    result.ok = true;
  } catch (err) {
    if (!(err instanceof StepFailure)) throw err;
  } finally {
    for (const ua of agents) ua.close();
  }
  return result;
}

export function renderSyntheticResult(r: SyntheticResult): string[] {
  const lines = r.steps.map(
    (s) => `${s.ok ? 'ok  ' : 'FAIL'}  ${s.step.padEnd(24)} ${String(s.ms).padStart(5)} ms  ${s.detail}`,
  );
  const total = r.steps.reduce((n, s) => n + s.ms, 0);
  const failed = r.steps.find((s) => !s.ok);
  lines.push(
    r.ok
      ? `parley test ${r.test}: passed in ${total} ms`
      : `parley test ${r.test}: FAILED at ${failed?.step ?? 'start'}`,
  );
  return lines;
}
