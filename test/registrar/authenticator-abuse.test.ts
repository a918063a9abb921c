import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthFailureTracker } from '../../src/registrar/auth-failures.js';
import {
  Authenticator,
  type AuthFailureReason,
  type AuthOutcome,
} from '../../src/registrar/authenticator.js';
import { CredentialCache, type UserCredentials } from '../../src/registrar/credentials.js';
import { computeHa1, NonceManager } from '../../src/registrar/digest.js';
import { FakeFlow, sipMessage } from '../support/flow-fake.js';

const md5 = (s: string | Buffer) => createHash('md5').update(s).digest('hex');

function setup() {
  const clock = { t: 1_700_000_000_000 };
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
  const cache = new CredentialCache({ lookup: async (aor) => users.get(aor) });
  const nonces = new NonceManager({ secret: Buffer.alloc(32, 5), lifetimeSeconds: 300, now: () => clock.t });
  const failures: AuthFailureReason[] = [];
  let challenges = 0;
  const logs: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const logAt = (level: string) => (obj: Record<string, unknown>, msg: string) =>
    logs.push({ level, obj, msg });
  const sleeps: number[] = [];
  const auth = new Authenticator('example.com', nonces, cache, {
    failures: new AuthFailureTracker(undefined, () => clock.t),
    log: { warn: logAt('warn'), info: logAt('info'), debug: logAt('debug') } as never,
    onFailure: (reason) => failures.push(reason),
    onChallenge: () => challenges++,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { auth, clock, failures, challenges: () => challenges, logs, sleeps };
}

const flowA = new FakeFlow('flowA', 'tcp', '192.0.2.10', 40000);
const flowB = new FakeFlow('flowB', 'tcp', '198.51.100.20', 40001);

interface AnswerOptions {
  password?: string;
  nc?: number;
  qop?: 'auth' | 'auth-int' | null;
  method?: string;
  body?: string;
  user?: string;
}

function answer(nonce: string, o: AnswerOptions = {}): string {
  const uri = o.method === 'MESSAGE' ? 'sip:bob@example.com' : 'sip:example.com';
  const user = o.user ?? 'alice';
  const ha1 = md5(`${user}:example.com:${o.password ?? 'pw'}`);
  const method = o.method ?? 'REGISTER';
  const qop = o.qop === undefined ? 'auth' : o.qop;
  const nc = (o.nc ?? 1).toString(16).padStart(8, '0');
  const base = `Digest username="${user}", realm="example.com", nonce="${nonce}", uri="${uri}", algorithm=MD5`;
  if (qop === null) return `${base}, response="${md5(`${ha1}:${nonce}:${md5(`${method}:${uri}`)}`)}"`;
  const a2 = qop === 'auth-int' ? `${method}:${uri}:${md5(o.body ?? '')}` : `${method}:${uri}`;
  const response = md5(`${ha1}:${nonce}:${nc}:c0ffee:${qop}:${md5(a2)}`);
  return `${base}, response="${response}", qop=${qop}, nc=${nc}, cnonce="c0ffee"`;
}

function register(authorization?: string) {
  return sipMessage(`REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK${Math.random().toString(36).slice(2)}
From: <sip:alice@example.com>;tag=1
To: <sip:alice@example.com>
Call-ID: c1
CSeq: 1 REGISTER
Max-Forwards: 70
${authorization ? `Authorization: ${authorization}\n` : ''}Content-Length: 0

`);
}

function message(body: string, authorization?: string) {
  return sipMessage(`MESSAGE sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK${Math.random().toString(36).slice(2)}
From: <sip:alice@example.com>;tag=1
To: <sip:bob@example.com>
Call-ID: m1
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
${authorization ? `Proxy-Authorization: ${authorization}\n` : ''}Content-Length: ${Buffer.byteLength(body)}

${body}`);
}

function challengeOf(outcome: AuthOutcome): string {
  if (outcome.ok || !('challenges' in outcome))
    throw new Error(`expected a challenge: ${JSON.stringify(outcome)}`);
  return outcome.challenges[0];
}
const nonceOf = (outcome: AuthOutcome) => /nonce="([^"]+)"/.exec(challengeOf(outcome))?.[1] ?? '';

describe('digest replay', () => {
  it('accepts increasing nonce counts on the flow the nonce was issued to, and refuses a repeat', async () => {
    const { auth, failures, logs } = setup();
    const nonce = nonceOf(await auth.authenticate(register(), 'www', flowA));
    const first = answer(nonce);
    expect(await auth.authenticate(register(first), 'www', flowA)).toEqual({
      ok: true,
      aor: 'alice@example.com',
    });
    // The same Authorization again, on the same connection: a fresh challenge, stale=true.
    const replay = await auth.authenticate(register(first), 'www', flowA);
    expect(replay).toMatchObject({ ok: false, status: 401 });
    expect(challengeOf(replay)).toMatch(/stale=TRUE/);
    expect(nonceOf(replay)).not.toBe(nonce);
    expect(failures).toEqual(['replayed']);
    expect(logs.find((l) => l.obj.reason === 'replayed')?.level).toBe('warn');
    // A client that counts on is fine.
    expect(await auth.authenticate(register(answer(nonce, { nc: 2 })), 'www', flowA)).toMatchObject({
      ok: true,
    });
  });

  it('refuses a captured Authorization on another connection, with a fresh challenge bound there', async () => {
    const { auth, failures } = setup();
    const nonce = nonceOf(await auth.authenticate(register(), 'www', flowA));
    const captured = answer(nonce);
    expect(await auth.authenticate(register(captured), 'www', flowA)).toMatchObject({ ok: true });
    const elsewhere = await auth.authenticate(register(captured), 'www', flowB);
    expect(elsewhere).toMatchObject({ ok: false, status: 401 });
    expect(challengeOf(elsewhere)).toMatch(/stale=TRUE/);
    // Even a count never used before does not make it good on flowB: the nonce belongs to flowA.
    expect(await auth.authenticate(register(answer(nonce, { nc: 7 })), 'www', flowB)).toMatchObject({
      ok: false,
      status: 401,
    });
    expect(failures).toEqual(['other_flow', 'other_flow']);
    // A reconnected client answers the new challenge on its new connection and is in.
    const fresh = nonceOf(elsewhere);
    expect(await auth.authenticate(register(answer(fresh)), 'www', flowB)).toMatchObject({ ok: true });
    expect(await auth.authenticate(register(answer(fresh)), 'www', flowA)).toMatchObject({ status: 401 });
  });

  it('uses a nonce once when the client sends no qop (RFC 2069)', async () => {
    const { auth } = setup();
    const nonce = nonceOf(await auth.authenticate(register(), 'www', flowA));
    const noQop = answer(nonce, { qop: null });
    expect(await auth.authenticate(register(noQop), 'www', flowA)).toMatchObject({ ok: true });
    expect(await auth.authenticate(register(noQop), 'www', flowA)).toMatchObject({ ok: false, status: 401 });
  });

  it('offers auth-int for the proxy, covers the body with it, and still refuses a replayed qop=auth with a new body', async () => {
    const { auth, failures } = setup();
    const challenged = await auth.authenticate(message('hi'), 'proxy', flowA);
    expect(challenged).toMatchObject({ status: 407 });
    expect(challengeOf(challenged)).toContain('qop="auth,auth-int"');
    const nonce = nonceOf(challenged);
    const int = answer(nonce, { qop: 'auth-int', method: 'MESSAGE', body: 'hi' });
    expect(await auth.authenticate(message('hi', int), 'proxy', flowA)).toMatchObject({ ok: true });
    // Another body under the same auth-int answer does not verify.
    const tampered = answer(nonce, { qop: 'auth-int', method: 'MESSAGE', body: 'hi', nc: 2 });
    expect(await auth.authenticate(message('send money', tampered), 'proxy', flowA)).toMatchObject({
      status: 407,
    });
    expect(failures).toEqual(['wrong_password']);
    // qop=auth does not cover the body, but the captured answer works nowhere else and only once.
    const plain = answer(nonce, { qop: 'auth', method: 'MESSAGE', nc: 3 });
    expect(await auth.authenticate(message('hello', plain), 'proxy', flowA)).toMatchObject({ ok: true });
    expect(await auth.authenticate(message('send money', plain), 'proxy', flowA)).toMatchObject({
      status: 407,
    });
    expect(await auth.authenticate(message('send money', plain), 'proxy', flowB)).toMatchObject({
      status: 407,
    });
  });

  it('re-challenges a right answer to an expired nonce with stale=true, not as a failed guess', async () => {
    const { auth, clock, failures, logs } = setup();
    const nonce = nonceOf(await auth.authenticate(register(), 'www', flowA));
    clock.t += 301_000;
    const stale = await auth.authenticate(register(answer(nonce)), 'www', flowA);
    expect(challengeOf(stale)).toMatch(/stale=TRUE/);
    expect(failures).toEqual(['expired']);
    expect(logs.filter((l) => l.level === 'warn')).toEqual([]);
  });
});

describe('password guessing', () => {
  it('slows, logs and then locks a guesser, while the real user elsewhere still signs in', async () => {
    const { auth, failures, logs, sleeps, challenges } = setup();
    const nonce = nonceOf(await auth.authenticate(register(), 'www', flowA));
    expect(challenges()).toBe(1);
    for (let i = 1; i <= 5; i++) {
      const out = await auth.authenticate(
        register(answer(nonce, { password: `guess${i}`, nc: i })),
        'www',
        flowA,
      );
      expect(out).toMatchObject({ ok: false, status: 401 });
    }
    expect(sleeps).toEqual([500, 1000, 2000]);
    expect(failures).toEqual(Array(5).fill('wrong_password'));
    const warned = logs.filter((l) => l.level === 'warn' && l.obj.reason === 'wrong_password');
    expect(warned).toHaveLength(5);
    expect(warned[0].obj).toEqual({
      event: 'auth_failure',
      user: 'alice',
      aor: 'alice@example.com',
      address: '192.0.2.10',
      reason: 'wrong_password',
    });
    expect(logs.some((l) => l.msg.includes('locked out'))).toBe(true);
    // Nothing secret in any line.
    expect(JSON.stringify(logs)).not.toMatch(/response|[0-9a-f]{32}/);

    // Locked: even the right password from the guessing address gets a 403, not a verdict.
    const locked = await auth.authenticate(register(answer(nonce, { nc: 6 })), 'www', flowA);
    expect(locked).toMatchObject({ ok: false, status: 403 });
    expect(failures.at(-1)).toBe('locked_out');

    // The real user on another address is not locked out.
    const other = nonceOf(await auth.authenticate(register(), 'www', flowB));
    expect(await auth.authenticate(register(answer(other)), 'www', flowB)).toEqual({
      ok: true,
      aor: 'alice@example.com',
    });
  });

  it('lets the guessing address back in after the lockout', async () => {
    const { auth, clock } = setup();
    const nonce = nonceOf(await auth.authenticate(register(), 'www', flowA));
    for (let i = 1; i <= 5; i++)
      await auth.authenticate(register(answer(nonce, { password: 'x', nc: i })), 'www', flowA);
    expect(await auth.authenticate(register(answer(nonce, { nc: 6 })), 'www', flowA)).toMatchObject({
      status: 403,
    });
    clock.t += 31_000;
    expect(await auth.authenticate(register(answer(nonce, { nc: 7 })), 'www', flowA)).toMatchObject({
      ok: true,
    });
  });

  it('counts unknown and disabled users as failures with their own reasons', async () => {
    const { auth, failures, logs } = setup();
    const nonce = nonceOf(await auth.authenticate(register(), 'www', flowA));
    await auth.authenticate(register(answer(nonce, { user: 'mallory' })), 'www', flowA);
    expect(failures).toEqual(['unknown_user']);
    expect(logs.at(-1)?.obj).toEqual({
      event: 'auth_failure',
      user: 'mallory',
      aor: 'mallory@example.com',
      address: '192.0.2.10',
      reason: 'unknown_user',
    });
  });
});
