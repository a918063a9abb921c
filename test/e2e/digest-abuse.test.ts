import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/ops/config.js';
import { createLogger } from '../../src/ops/log.js';
import { computeHa1 } from '../../src/registrar/digest.js';
import { type ParleyServer, startServer } from '../../src/roles/server.js';
import { UserRepository } from '../../src/store/users.js';

/**
 * Digest replay and password guessing from outside: raw TCP clients that compute their own
 * MD5 digest (RFC 7616 3.4.1) play the captured-and-replayed requests of an attacker and a
 * guessing script, against a real server whose log lines and /metrics the test reads.
 */

const md5 = (s: string) => createHash('md5').update(s).digest('hex');
const DOMAIN = 'example.com';

class RawClient {
  private buffer = '';
  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('latin1');
    });
    socket.on('error', () => undefined);
  }

  static open(port: number, localAddress = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', localAddress }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  send(head: string, body = ''): void {
    const lines = head.trim().split('\n');
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
    this.socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
  }

  /** The next message's head (start line and headers); its body is skipped. */
  async next(timeoutMs = 12_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.buffer.slice(0, end);
        const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
        if (this.buffer.length >= end + 4 + length) {
          this.buffer = this.buffer.slice(end + 4 + length);
          return head;
        }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`nothing received; buffer: ${JSON.stringify(this.buffer)}`);
  }

  /** The next response, answering (200) any request the server sends us meanwhile. */
  async response(): Promise<string> {
    for (;;) {
      const head = await this.next();
      if (head.startsWith('SIP/2.0 ')) return head;
      this.answer(head);
    }
  }

  /** Waits for a request (a MESSAGE delivered to us), answering it 200. */
  async request(timeoutMs = 3000): Promise<string | undefined> {
    try {
      for (;;) {
        const head = await this.next(timeoutMs);
        if (!head.startsWith('SIP/2.0 ')) {
          this.answer(head);
          return head;
        }
      }
    } catch {
      return undefined;
    }
  }

  private answer(request: string): void {
    const keep = request
      .split('\r\n')
      .filter((l) => /^(via|from|to|call-id|cseq):/i.test(l))
      .map((l) => (/^to:/i.test(l) && !/;tag=/.test(l) ? `${l};tag=uas` : l));
    this.send(['SIP/2.0 200 OK', ...keep].join('\n'));
  }

  close(): void {
    this.socket.destroy();
  }
}

function digest(
  challenge: string,
  o: { user: string; password: string; method: string; uri: string; nc?: number },
) {
  const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1];
  if (!nonce) throw new Error(`no nonce in ${challenge}`);
  const nc = (o.nc ?? 1).toString(16).padStart(8, '0');
  const ha1 = md5(`${o.user}:${DOMAIN}:${o.password}`);
  const response = md5(`${ha1}:${nonce}:${nc}:0a4f113b:auth:${md5(`${o.method}:${o.uri}`)}`);
  return `Digest username="${o.user}", realm="${DOMAIN}", nonce="${nonce}", uri="${o.uri}", response="${response}", algorithm=MD5, qop=auth, nc=${nc}, cnonce="0a4f113b"`;
}

const header = (head: string, name: string) =>
  head
    .split('\r\n')
    .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((l) => l.slice(name.length + 1).trim());
const status = (head: string) => Number(head.split(' ')[1]);

let seq = 0;
function registerHead(
  c: RawClient,
  user: string,
  contactHost: string,
  auth?: string,
  callId = `reg-${user}`,
): string {
  seq++;
  return `REGISTER sip:${DOMAIN} SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=z9hG4bKreg${seq}
From: <sip:${user}@${DOMAIN}>;tag=r${seq}
To: <sip:${user}@${DOMAIN}>
Call-ID: ${callId}
CSeq: ${seq} REGISTER
Contact: <sip:${user}@${contactHost};transport=tcp>
Expires: 600
Max-Forwards: 70${auth ? `\nAuthorization: ${auth}` : ''}`;
}

function messageHead(c: RawClient, from: string, to: string, auth?: string): string {
  seq++;
  return `MESSAGE sip:${to}@${DOMAIN} SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=z9hG4bKmsg${seq}
From: <sip:${from}@${DOMAIN}>;tag=m${seq}
To: <sip:${to}@${DOMAIN}>
Call-ID: msg-${seq}
CSeq: 1 MESSAGE
Content-Type: text/plain
Max-Forwards: 70${auth ? `\nProxy-Authorization: ${auth}` : ''}`;
}

/** Registers user on c (challenge, answer) and returns the 200 and the Authorization sent. */
async function register(c: RawClient, user: string, password: string, contactHost: string) {
  c.send(registerHead(c, user, contactHost));
  const challenge = await c.response();
  expect(status(challenge)).toBe(401);
  const auth = digest(header(challenge, 'www-authenticate')[0], {
    user,
    password,
    method: 'REGISTER',
    uri: `sip:${DOMAIN}`,
  });
  c.send(registerHead(c, user, contactHost, auth));
  return { ok: await c.response(), auth, challenge };
}

describe('digest replay and password guessing over raw TCP', () => {
  let server: ParleyServer;
  let port: number;
  let dataDir: string;
  const logLines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'parley-digest-'));
    const config = loadConfig({
      cwd: dataDir,
      env: {},
      overrides: {
        domain: DOMAIN,
        serverId: 'digest-test',
        listen: { tcp: { host: '127.0.0.1', port: 0 } },
        http: { host: '127.0.0.1', port: 0 },
        database: { dataDir },
        log: { level: 'warn' },
      },
    });
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) logLines.push(JSON.parse(line));
        done();
      },
    });
    server = await startServer(config, { log: createLogger(config, { destination }) });
    port = server.listening.find((l) => l.transport === 'tcp')?.port ?? 0;
    const users = new UserRepository(server.db);
    for (const name of ['alice', 'bob', 'carol']) {
      const user = await users.createUser({ aor: `${name}@${DOMAIN}`, displayName: name });
      await users.setCredentials(user.id, DOMAIN, {
        ha1Md5: computeHa1(name, DOMAIN, 'secret', 'MD5'),
        ha1Sha256: computeHa1(name, DOMAIN, 'secret', 'SHA-256'),
      });
    }
  });
  afterAll(async () => {
    await server?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a replayed REGISTER on the same and on another connection, and the attacker gets no calls', async () => {
    const alice = await RawClient.open(port);
    const { ok, auth } = await register(alice, 'alice', 'secret', `127.0.0.1:${alice.localPort}`);
    expect(status(ok)).toBe(200);

    // The same Authorization again on alice's own connection: a fresh challenge.
    alice.send(registerHead(alice, 'alice', `127.0.0.1:${alice.localPort}`, auth));
    const again = await alice.response();
    expect(status(again)).toBe(401);
    expect(header(again, 'www-authenticate')[0]).toMatch(/stale=TRUE/);

    // The attacker replays it from its own connection, with its own Contact.
    const mallory = await RawClient.open(port);
    mallory.send(registerHead(mallory, 'alice', 'attacker.invalid', auth, 'reg-mallory'));
    const replay = await mallory.response();
    expect(status(replay)).toBe(401);
    expect(header(replay, 'www-authenticate')[0]).not.toContain(/nonce="([^"]+)"/.exec(auth)?.[1] ?? '-');

    // bob's MESSAGE to alice reaches alice, never the attacker.
    const bob = await RawClient.open(port);
    expect(status((await register(bob, 'bob', 'secret', `127.0.0.1:${bob.localPort}`)).ok)).toBe(200);
    bob.send(messageHead(bob, 'bob', 'alice'), 'hello alice');
    const delivered = await alice.request();
    expect(delivered).toMatch(/^MESSAGE /);
    expect(status(await bob.response())).toBe(200);
    expect(await mallory.request(500)).toBeUndefined();
    for (const c of [alice, bob, mallory]) c.close();
  });

  it('refuses a captured Proxy-Authorization with a new body, on another connection and on the same one', async () => {
    const carol = await RawClient.open(port);
    carol.send(messageHead(carol, 'carol', 'bob'), 'first');
    const challenge = await carol.response();
    expect(status(challenge)).toBe(407);
    const proxyAuth = header(challenge, 'proxy-authenticate')[0];
    expect(proxyAuth).toContain('qop="auth,auth-int"');
    const auth = digest(proxyAuth, {
      user: 'carol',
      password: 'secret',
      method: 'MESSAGE',
      uri: `sip:bob@${DOMAIN}`,
    });
    carol.send(messageHead(carol, 'carol', 'bob', auth), 'first');
    // bob is not registered now: any answer but 407 means carol's credentials were accepted.
    expect(status(await carol.response())).not.toBe(407);

    const mallory = await RawClient.open(port);
    mallory.send(messageHead(mallory, 'carol', 'bob', auth), 'transfer all the money');
    expect(status(await mallory.response())).toBe(407);
    mallory.send(messageHead(mallory, 'carol', 'bob', auth), 'and again');
    expect(status(await mallory.response())).toBe(407);
    carol.close();
    mallory.close();
  });

  it('slows a guesser, logs each failure, locks it out, and lets the real user in from elsewhere', async () => {
    const guesser = await RawClient.open(port);
    guesser.send(registerHead(guesser, 'bob', 'guess.invalid'));
    const challenge = header(await guesser.response(), 'www-authenticate')[0];
    const started = Date.now();
    const statuses: number[] = [];
    for (let i = 1; i <= 12; i++) {
      const auth = digest(challenge, {
        user: 'bob',
        password: `guess-${i}`,
        method: 'REGISTER',
        uri: `sip:${DOMAIN}`,
        nc: i,
      });
      guesser.send(registerHead(guesser, 'bob', 'guess.invalid', auth));
      statuses.push(status(await guesser.response()));
    }
    const elapsed = Date.now() - started;
    // Five guesses answered 401, the later ones slower and slower (0.5 + 1 + 2 s), then 403.
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5)).toEqual(Array(7).fill(403));
    expect(elapsed).toBeGreaterThanOrEqual(3000);

    // One warn line per failed guess: user, address and reason, and nothing secret.
    const failures = logLines.filter((l) => l.msg === 'authentication failed' && l.user === 'bob');
    expect(failures).toHaveLength(5);
    expect(failures[0]).toMatchObject({
      level: 'warn',
      user: 'bob',
      address: '127.0.0.1',
      reason: 'wrong_password',
    });
    expect(logLines.some((l) => l.level === 'warn' && String(l.msg).includes('locked out'))).toBe(true);
    expect(JSON.stringify(logLines)).not.toMatch(/response=|[0-9a-f]{32}/);

    // The real bob, from another address, still signs in with his password.
    const realBob = await RawClient.open(port, '127.0.0.2');
    const { ok } = await register(realBob, 'bob', 'secret', `127.0.0.2:${realBob.localPort}`);
    expect(status(ok)).toBe(200);

    // Failures are counted apart from the first challenge of each sign-in.
    const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
    const value = (series: string) =>
      Number(
        new RegExp(`^${series.replace(/[{}"]/g, (c) => `\\${c}`)} (\\d+)`, 'm').exec(metrics)?.[1] ?? NaN,
      );
    expect(
      value('parley_auth_failures_total{reason="wrong_password",server="digest-test",role="standard"}'),
    ).toBe(5);
    expect(
      value('parley_auth_failures_total{reason="locked_out",server="digest-test",role="standard"}'),
    ).toBe(7);
    expect(
      value('parley_auth_challenges_total{server="digest-test",role="standard"}'),
    ).toBeGreaterThanOrEqual(5);
    guesser.close();
    realBob.close();
  });
});
