import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/ops/log.js';
import { Authenticator } from '../../src/registrar/authenticator.js';
import { CredentialCache } from '../../src/registrar/credentials.js';
import { computeHa1, NonceManager } from '../../src/registrar/digest.js';
import { LocationTable } from '../../src/registrar/location.js';
import { Registrar } from '../../src/registrar/registrar.js';
import type { SipMessage } from '../../src/sip/message.js';
import { TransactionLayer } from '../../src/transaction/layer.js';
import { TimerWheel } from '../../src/transaction/timers.js';
import { FakeFlow, sipMessage } from '../support/flow-fake.js';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

function setup() {
  const location = new LocationTable();
  const cache = new CredentialCache({ lookup: async () => undefined });
  cache.preload(
    ['alice', 'bob'].map((u) => ({
      aor: `${u}@example.com`,
      enabled: true,
      ha1Md5: computeHa1(u, 'example.com', 'pw', 'MD5'),
      ha1Sha256: computeHa1(u, 'example.com', 'pw', 'SHA-256'),
    })),
  );
  const auth = new Authenticator('example.com', new NonceManager({ secret: Buffer.alloc(32, 9) }), cache, [
    'MD5',
  ]);
  const registrar = new Registrar({
    domain: 'example.com',
    serverId: 's1',
    minExpires: 60,
    maxExpires: 3600,
    defaultExpires: 600,
    authenticator: auth,
    location,
  });
  const layer = new TransactionLayer({ timers: new TimerWheel(undefined, 50, false), log: silentLogger() });
  layer.setUser({
    onRequest: (req, st) => registrar.handle(req, st),
    onAck: () => undefined,
    onCancel: () => undefined,
    onStrayResponse: () => undefined,
  });
  const flow = new FakeFlow();
  let seq = 0;
  /** Sends a REGISTER as `user`, answering the challenge, and returns the final response. */
  async function register(
    user: string,
    headers: string[],
    callId = 'reg-1',
    asAor = user,
  ): Promise<SipMessage> {
    const send = (auth?: string) => {
      seq++;
      layer.receive(
        sipMessage(
          [
            'REGISTER sip:example.com SIP/2.0',
            `Via: SIP/2.0/TCP 192.0.2.10:40000;branch=z9hG4bKr${seq}`,
            `From: <sip:${asAor}@example.com>;tag=f${seq}`,
            `To: <sip:${asAor}@example.com>`,
            `Call-ID: ${callId}`,
            `CSeq: ${seq} REGISTER`,
            'Max-Forwards: 70',
            ...headers,
            ...(auth ? [`Authorization: ${auth}`] : []),
            'Content-Length: 0',
            '',
            '',
          ].join('\n'),
        ),
        flow,
      );
    };
    send();
    await new Promise((r) => setImmediate(r));
    const challenge = flow.sent.at(-1)!;
    const nonce = /nonce="([^"]+)"/.exec(challenge.get('www-authenticate') ?? '')?.[1] ?? '';
    const ha1 = md5(`${user}:example.com:pw`);
    const response = md5(`${ha1}:${nonce}:00000001:c:auth:${md5('REGISTER:sip:example.com')}`);
    send(
      `Digest username="${user}", realm="example.com", nonce="${nonce}", uri="sip:example.com", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c"`,
    );
    await new Promise((r) => setImmediate(r));
    return flow.sent.at(-1)!;
  }
  return { register, location, flow };
}

describe('registrar (RFC 3261 10.3)', () => {
  it('binds several contacts, reports them with their expiry, and removes them with "*"', async () => {
    const { register, location } = setup();
    const ok = await register('alice', [
      'Contact: <sip:alice@192.0.2.10:5060>;expires=300',
      'Contact: <sip:alice@192.0.2.11:5060>',
    ]);
    expect(ok.status).toBe(200);
    expect(ok.getAll('contact')).toHaveLength(2);
    expect(ok.getAll('contact').join()).toMatch(/expires=300/);
    expect(location.lookup('alice@example.com')).toHaveLength(2);
    const cleared = await register('alice', ['Contact: *', 'Expires: 0'], 'reg-1');
    expect(cleared.status).toBe(200);
    expect(location.lookup('alice@example.com')).toHaveLength(0);
  });

  it('answers 423 with Min-Expires for a too short registration', async () => {
    const { register } = setup();
    const tooShort = await register('alice', ['Contact: <sip:alice@192.0.2.10:5060>', 'Expires: 10']);
    expect(tooShort.status).toBe(423);
    expect(tooShort.get('min-expires')).toBe('60');
  });

  it('shortens a too long registration to the maximum', async () => {
    const { register, location } = setup();
    await register('alice', ['Contact: <sip:alice@192.0.2.10:5060>', 'Expires: 999999']);
    const [b] = location.lookup('alice@example.com');
    expect(b.expiresAt - Date.now()).toBeLessThanOrEqual(3600 * 1000);
  });

  it("refuses to register someone else's address (403)", async () => {
    const { register, location } = setup();
    const res = await register('bob', ['Contact: <sip:bob@192.0.2.10:5060>'], 'reg-2', 'alice');
    expect(res.status).toBe(403);
    expect(location.lookup('alice@example.com')).toHaveLength(0);
  });

  it('answers a query (no Contact) with the current bindings', async () => {
    const { register } = setup();
    await register('alice', ['Contact: <sip:alice@192.0.2.10:5060>']);
    const query = await register('alice', []);
    expect(query.status).toBe(200);
    expect(query.getAll('contact')).toHaveLength(1);
  });
});
