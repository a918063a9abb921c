import { createRequire } from 'node:module';
import { WebSocket } from 'ws';

// JsSIP is a browser library: in Node it needs a global WebSocket.
(globalThis as unknown as { WebSocket: unknown }).WebSocket = WebSocket;

const require = createRequire(import.meta.url);
// biome-ignore lint/suspicious/noExplicitAny: JsSIP ships partial typings; the tests use its runtime API.
type Any = any;
const JsSIP: Any = require('jssip');
const RequestSender: Any = require('jssip/lib/RequestSender');
const SIPMessage: Any = require('jssip/lib/SIPMessage');
JsSIP.debug.disable('JsSIP:*');

export interface ReceivedMessage {
  from: string;
  body: string;
}

export interface Notification {
  final: boolean;
  body: string;
  state: string;
}

/** A real SIP client (JsSIP over WebSocket) signed in to a Parley server. */
export class TestClient {
  readonly messages: ReceivedMessage[] = [];
  private messageWaiters: Array<(m: ReceivedMessage) => void> = [];

  private constructor(
    readonly ua: Any,
    readonly aor: string,
  ) {
    ua.on('newMessage', (e: Any) => {
      if (e.originator !== 'remote') return;
      const m = { from: String(e.request.from.uri.user), body: String(e.request.body) };
      this.messages.push(m);
      for (const w of this.messageWaiters.splice(0)) w(m);
    });
  }

  static signIn(wsUrl: string, user: string, domain: string, password: string): Promise<TestClient> {
    const socket = new JsSIP.WebSocketInterface(wsUrl);
    const ua = new JsSIP.UA({
      sockets: [socket],
      uri: `sip:${user}@${domain}`,
      password,
      register: true,
      register_expires: 300,
      session_timers: false,
      connection_recovery_min_interval: 1,
      connection_recovery_max_interval: 2,
    });
    return new Promise((resolve, reject) => {
      // Both listeners go once either fires: a registration failure long after sign-in (the
      // server closing the connection under a REGISTER) must not stop the client's UA, which
      // would then never reconnect nor register again.
      const registered = () => {
        ua.off('registrationFailed', failed);
        resolve(new TestClient(ua, `${user}@${domain}`));
      };
      const failed = (e: Any) => {
        ua.off('registered', registered);
        ua.stop();
        reject(
          new Error(`registration failed: ${e.cause}${e.response ? ` (${e.response.status_code})` : ''}`),
        );
      };
      ua.once('registered', registered);
      ua.once('registrationFailed', failed);
      ua.start();
    });
  }

  sendMessage(to: string, body: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ua.sendMessage(`sip:${to}`, body, {
        eventHandlers: {
          succeeded: () => resolve(),
          failed: (e: Any) =>
            reject(new Error(`MESSAGE failed: ${e.cause} ${e.response?.status_code ?? ''}`)),
        },
      });
    });
  }

  nextMessage(timeoutMs = 5000): Promise<ReceivedMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no MESSAGE arrived')), timeoutMs);
      this.messageWaiters.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  }

  /**
   * PUBLISH (RFC 3903) of a PIDF document. JsSIP has no publication API, so this builds the
   * request with JsSIP's own message and request-sender classes (digest included).
   */
  publish(
    body: string,
    opts: { etag?: string; expires?: number; event?: string; contentType?: string } = {},
  ): Promise<{ status: number; etag?: string }> {
    const extraHeaders = [
      `Event: ${opts.event ?? 'presence'}`,
      `Expires: ${opts.expires ?? 600}`,
      `Content-Type: ${opts.contentType ?? 'application/pidf+xml'}`,
    ];
    if (opts.etag) extraHeaders.push(`SIP-If-Match: ${opts.etag}`);
    const request = new SIPMessage.OutgoingRequest(
      'PUBLISH',
      JsSIP.URI.parse(`sip:${this.aor}`),
      this.ua,
      {},
      extraHeaders,
      body,
    );
    return new Promise((resolve, reject) => {
      const sender = new RequestSender(this.ua, request, {
        onRequestTimeout: () => reject(new Error('PUBLISH timed out')),
        onTransportError: () => reject(new Error('PUBLISH transport error')),
        onReceiveResponse: (response: Any) => {
          if (response.status_code < 200) return;
          resolve({ status: response.status_code, etag: response.getHeader('SIP-ETag') ?? undefined });
        },
      });
      sender.send();
    });
  }

  /** Watches another user's presence; the returned object collects every NOTIFY. */
  watch(target: string, event = 'presence', accept = 'application/pidf+xml'): Watch {
    const subscriber = this.ua.subscribe(`sip:${target}`, event, accept, {
      expires: 600,
      contentType: accept,
      params: { to_uri: JsSIP.URI.parse(`sip:${target}`), from_uri: JsSIP.URI.parse(`sip:${this.aor}`) },
    });
    const watch = new Watch(subscriber);
    subscriber.subscribe();
    return watch;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.ua.isRegistered()) {
        this.ua.stop();
        resolve();
        return;
      }
      this.ua.once('unregistered', () => setTimeout(resolve, 50));
      this.ua.stop();
      setTimeout(resolve, 2000);
    });
  }
}

export class Watch {
  readonly notifications: Notification[] = [];
  private waiters: Array<{ test: (n: Notification) => boolean; resolve: (n: Notification) => void }> = [];

  constructor(readonly subscriber: Any) {
    subscriber.on('notify', (isFinal: boolean, request: Any, body: string | undefined) => {
      this.record({
        final: isFinal,
        body: body ?? '',
        state: String(request.getHeader('Subscription-State') ?? ''),
      });
    });
    // JsSIP reports a final NOTIFY without a body only as 'terminated'.
    subscriber.on('terminated', (code: number, reason: string | undefined) => {
      if (code === subscriber.C.FINAL_NOTIFY_RECEIVED && !this.notifications.some((n) => n.final)) {
        this.record({ final: true, body: '', state: `terminated;reason=${reason ?? ''}` });
      }
    });
  }

  private record(n: Notification): void {
    this.notifications.push(n);
    this.waiters = this.waiters.filter((w) => {
      if (!w.test(n)) return true;
      w.resolve(n);
      return false;
    });
  }

  /** Resolves with the first notification (already received or coming) that passes the test. */
  until(test: (n: Notification) => boolean, timeoutMs = 5000): Promise<Notification> {
    const seen = this.notifications.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching NOTIFY; got ${JSON.stringify(this.notifications)}`)),
        timeoutMs,
      );
      this.waiters.push({
        test,
        resolve: (n) => {
          clearTimeout(timer);
          resolve(n);
        },
      });
    });
  }

  /** Only notifications after this call count. */
  next(test: (n: Notification) => boolean, timeoutMs = 5000): Promise<Notification> {
    const start = this.notifications.length;
    return this.until((n) => this.notifications.indexOf(n) >= start && test(n), timeoutMs);
  }
}

export function pidf(entity: string, basic: 'open' | 'closed', activity?: string, note?: string): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:${entity}">`,
    `<tuple id="t1"><status><basic>${basic}</basic></status>${note ? `<note>${note}</note>` : ''}</tuple>`,
    activity ? `<dm:person id="p1"><rpid:activities><rpid:${activity}/></rpid:activities></dm:person>` : '',
    '</presence>',
  ].join('');
}
