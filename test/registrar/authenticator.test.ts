import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/registrar/authenticator.js';
import { CredentialCache, type UserCredentials } from '../../src/registrar/credentials.js';
import { computeHa1, NonceManager } from '../../src/registrar/digest.js';
import { sipMessage } from '../support/flow-fake.js';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

function setup(now = { t: 1_000_000 }) {
  const users = new Map<string, UserCredentials>([
    [
      'alice@example.com',
      {
        aor: 'alice@example.com',
        enabled: true,
        ha1Md5: computeHa1('alice', 'example.com', 'pw', 'MD5'),
        ha1Sha256: computeHa1('alice', 'example.com', 'pw', 'SHA-256'),
      },
    ],
  ]);
  let lookups = 0;
  const cache = new CredentialCache({
    lookup: async (aor) => {
      lookups++;
      return users.get(aor);
    },
  });
  const nonces = new NonceManager({ secret: Buffer.alloc(32, 3), lifetimeSeconds: 60, now: () => now.t });
  const auth = new Authenticator('example.com', nonces, cache, ['MD5']);
  return { auth, users, now, lookups: () => lookups, nonces };
}

function register(authorization?: string, uri = 'sip:example.com') {
  return sipMessage(`REGISTER ${uri} SIP/2.0
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKa1
From: <sip:alice@example.com>;tag=1
To: <sip:alice@example.com>
Call-ID: c1
CSeq: 1 REGISTER
Max-Forwards: 70
${authorization ? `Authorization: ${authorization}\n` : ''}Content-Length: 0

`);
}

function answer(
  nonce: string,
  password: string,
  opts: { uri?: string; realm?: string; user?: string; nc?: number } = {},
) {
  const uri = opts.uri ?? 'sip:example.com';
  const realm = opts.realm ?? 'example.com';
  const user = opts.user ?? 'alice';
  const nc = (opts.nc ?? 1).toString(16).padStart(8, '0');
  const ha1 = md5(`${user}:${realm}:${password}`);
  const response = md5(`${ha1}:${nonce}:${nc}:c0ffee:auth:${md5(`REGISTER:${uri}`)}`);
  return `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=${nc}, cnonce="c0ffee"`;
}

const nonceOf = (challenge: string) => /nonce="([^"]+)"/.exec(challenge)?.[1] ?? '';

describe('digest authentication of a request', () => {
  it('challenges, then accepts the right answer (and caches the credentials)', async () => {
    const { auth, lookups } = setup();
    const first = await auth.authenticate(register(), 'www');
    expect(first.ok).toBe(false);
    if (first.ok || !('challenges' in first)) throw new Error('expected a challenge');
    expect(first.status).toBe(401);
    expect(first.challenges).toHaveLength(1);
    const nonce = nonceOf(first.challenges[0]);
    expect(await auth.authenticate(register(answer(nonce, 'pw')), 'www')).toEqual({
      ok: true,
      aor: 'alice@example.com',
    });
    // Second time (next nonce count) from the cache: synchronous, no lookup.
    const again = auth.authenticate(register(answer(nonce, 'pw', { nc: 2 })), 'www');
    expect(again).toEqual({ ok: true, aor: 'alice@example.com' });
    expect(lookups()).toBe(1);
  });

  it('over UDP challenges a request without credentials from its transaction and the issue time it records, the same each time; elsewhere afresh', async () => {
    const { auth, now } = setup();
    const udp = { id: 'u1', remoteAddress: '192.0.2.1', transport: 'udp' as const, peerNames: [] };
    const tcp = { ...udp, id: 't1', transport: 'tcp' as const };
    const seed: { key: string; challengeIssuedAt?: number } = { key: 'z9hG4bKa1|192.0.2.1:5060|REGISTER' };
    const first = await auth.authenticate(register(), 'www', udp, seed);
    expect(seed.challengeIssuedAt).toBe(now.t);
    now.t += 5_000;
    // The retransmission comes with the recorded time: the same challenge and To tag.
    const again = await auth.authenticate(register(), 'www', udp, { ...seed });
    expect(again).toEqual(first);
    // A fresh transaction, or TCP (no Timer J), gets another; over TCP nothing is recorded.
    expect(await auth.authenticate(register(), 'www', udp, { key: seed.key })).not.toEqual(first);
    const overTcp: { key: string; challengeIssuedAt?: number } = { key: seed.key };
    const t1 = await auth.authenticate(register(), 'www', tcp, overTcp);
    expect(overTcp.challengeIssuedAt).toBeUndefined();
    expect(await auth.authenticate(register(), 'www', tcp, overTcp)).not.toEqual(t1);
  });

  it('answers a wrong password and an unknown user alike: a fresh challenge', async () => {
    const { auth } = setup();
    const nonce = nonceOf(
      ((await auth.authenticate(register(), 'www')) as { challenges: string[] }).challenges[0],
    );
    const wrong = await auth.authenticate(register(answer(nonce, 'nope')), 'www');
    const unknown = await auth.authenticate(register(answer(nonce, 'pw', { user: 'mallory' })), 'www');
    expect(wrong).toMatchObject({ ok: false, status: 401 });
    expect(unknown).toMatchObject({ ok: false, status: 401 });
  });

  it('asks again with stale=true for a correct answer to an expired nonce (RFC 7616 3.3)', async () => {
    const { auth, now } = setup();
    const nonce = nonceOf(
      ((await auth.authenticate(register(), 'www')) as { challenges: string[] }).challenges[0],
    );
    now.t += 120_000;
    const stale = await auth.authenticate(register(answer(nonce, 'pw')), 'www');
    expect(stale).toMatchObject({ ok: false, status: 401 });
    expect((stale as { challenges: string[] }).challenges[0]).toMatch(/stale=TRUE/);
  });

  it('refuses a digest uri that names another server and a disabled user', async () => {
    const { auth, users } = setup();
    const nonce = nonceOf(
      ((await auth.authenticate(register(), 'www')) as { challenges: string[] }).challenges[0],
    );
    const elsewhere = await auth.authenticate(
      register(answer(nonce, 'pw', { uri: 'sip:other.example.net' })),
      'www',
    );
    expect(elsewhere).toMatchObject({ ok: false, status: 400 });
    users.get('alice@example.com')!.enabled = false;
    expect(await auth.authenticate(register(answer(nonce, 'pw')), 'www')).toMatchObject({
      ok: false,
      status: 401,
    });
  });

  it('picks up a password change at once instead of refusing with the cached HA1', async () => {
    const { auth, users } = setup();
    const nonce = nonceOf(
      ((await auth.authenticate(register(), 'www')) as { challenges: string[] }).challenges[0],
    );
    expect(await auth.authenticate(register(answer(nonce, 'pw')), 'www')).toMatchObject({ ok: true });
    users.set('alice@example.com', {
      aor: 'alice@example.com',
      enabled: true,
      ha1Md5: computeHa1('alice', 'example.com', 'new-pw', 'MD5'),
      ha1Sha256: computeHa1('alice', 'example.com', 'new-pw', 'SHA-256'),
    });
    expect(await auth.authenticate(register(answer(nonce, 'new-pw', { nc: 2 })), 'www')).toMatchObject({
      ok: true,
    });
  });

  it('uses Proxy-Authenticate (407) for the proxy', async () => {
    const { auth } = setup();
    expect(await auth.authenticate(register(), 'proxy')).toMatchObject({ ok: false, status: 407 });
  });
});
