import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/ops/config.js';
import { createLogger } from '../../src/ops/log.js';
import { computeHa1 } from '../../src/registrar/digest.js';
import { startServer } from '../../src/roles/server.js';
import { UserRepository } from '../../src/store/users.js';
import { digestAnswer, fresh, type RawMessage, RawSipClient } from '../support/raw-sip.js';

/**
 * What an administrator reads in the log of a running server (docs/logging.md): sign-in and
 * sign-out lines with their reasons, one line per authentication failure, and at debug one
 * line per SIP message with no credential and no body.
 */
const DOMAIN = 'example.com';

type Line = Record<string, unknown>;

async function startLoggedServer(level: 'info' | 'debug') {
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-log-'));
  const config = loadConfig({
    cwd: dataDir,
    env: {},
    overrides: {
      domain: DOMAIN,
      serverId: 'log-test',
      listen: { tcp: { host: '127.0.0.1', port: 0 } },
      http: { host: '127.0.0.1', port: 0 },
      database: { dataDir },
      registrar: { minExpires: 1, connectionGraceSeconds: 1 },
      log: { level, format: 'json' },
    },
  });
  const lines: Line[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const server = await startServer(config, { log: createLogger(config, { destination }) });
  const users = new UserRepository(server.db);
  for (const name of ['alice', 'bob']) {
    const user = await users.createUser({ aor: `${name}@${DOMAIN}`, displayName: name });
    await users.setCredentials(user.id, DOMAIN, {
      ha1Md5: computeHa1(name, DOMAIN, `${name}-pw`, 'MD5'),
      ha1Sha256: computeHa1(name, DOMAIN, `${name}-pw`, 'SHA-256'),
    });
  }
  return {
    server,
    lines,
    port: server.listening.find((l) => l.transport === 'tcp')?.port ?? 0,
    async stop() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function registerText(
  c: RawSipClient,
  o: { user: string; callId: string; cseq: number; expires: number; auth?: string },
) {
  return [
    `REGISTER sip:${DOMAIN} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};rport;branch=${fresh('z9hG4bK')}`,
    'Max-Forwards: 70',
    `From: <sip:${o.user}@${DOMAIN}>;tag=${fresh('t')}`,
    `To: <sip:${o.user}@${DOMAIN}>`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq} REGISTER`,
    `Contact: <sip:${o.user}@127.0.0.1:${c.localPort};transport=tcp>`,
    `Expires: ${o.expires}`,
    'User-Agent: LogTest/1.0',
    ...(o.auth ? [`Authorization: ${o.auth}`] : []),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/** REGISTER, the 401, the answer with `password`; the final response. */
async function register(
  c: RawSipClient,
  user: string,
  password: string,
  expires: number,
): Promise<RawMessage> {
  const callId = fresh('reg');
  c.send(registerText(c, { user, callId, cseq: 1, expires }));
  const challenge = await c.response();
  expect(challenge.status).toBe(401);
  const auth = digestAnswer(challenge.header('www-authenticate') ?? '', {
    user,
    password,
    method: 'REGISTER',
    uri: `sip:${DOMAIN}`,
  });
  c.send(registerText(c, { user, callId, cseq: 2, expires, auth }));
  return c.response();
}

async function waitFor(lines: Line[], test: (l: Line) => boolean, ms = 8000): Promise<Line> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = lines.find(test);
    if (found) return found;
    if (Date.now() > deadline)
      throw new Error(`no such log line in ${ms} ms:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('logging at info: sign-ins, sign-outs and authentication failures', () => {
  let srv: Awaited<ReturnType<typeof startLoggedServer>>;

  beforeAll(async () => {
    srv = await startLoggedServer('info');
  });
  afterAll(async () => {
    await srv.stop();
  });

  it('a sign-in line names the user, the contact, where it came from, the client and the expiry', async () => {
    const c = await RawSipClient.open(srv.port);
    try {
      expect((await register(c, 'alice', 'alice-pw', 600)).status).toBe(200);
      const line = await waitFor(srv.lines, (l) => l.event === 'sign_in' && l.user === `alice@${DOMAIN}`);
      expect(line).toMatchObject({
        level: 'info',
        component: 'registrar',
        msg: 'signed in',
        contact: `sip:alice@127.0.0.1:${c.localPort};transport=tcp`,
        transport: 'tcp',
        address: `127.0.0.1:${c.localPort}`,
        userAgent: 'LogTest/1.0',
        expires: 600,
      });
      // A refresh is not a second sign-in.
      expect((await register(c, 'alice', 'alice-pw', 600)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 100));
      expect(srv.lines.filter((l) => l.event === 'sign_in' && l.user === `alice@${DOMAIN}`)).toHaveLength(1);
      // Expires: 0 signs out, reason unregistered.
      expect((await register(c, 'alice', 'alice-pw', 0)).status).toBe(200);
      const out = await waitFor(srv.lines, (l) => l.event === 'sign_out' && l.user === `alice@${DOMAIN}`);
      expect(out).toMatchObject({
        level: 'info',
        msg: 'signed out',
        reason: 'unregistered',
        transport: 'tcp',
      });
    } finally {
      c.close();
    }
  });

  it('a client whose connection goes is signed out with reason connection_lost', async () => {
    const c = await RawSipClient.open(srv.port);
    expect((await register(c, 'bob', 'bob-pw', 600)).status).toBe(200);
    c.close();
    const out = await waitFor(srv.lines, (l) => l.event === 'sign_out' && l.user === `bob@${DOMAIN}`);
    expect(out).toMatchObject({ reason: 'connection_lost', userAgent: 'LogTest/1.0' });
  });

  it('a registration that is not refreshed is signed out with reason expired', async () => {
    const c = await RawSipClient.open(srv.port);
    try {
      const before = srv.lines.length;
      expect((await register(c, 'alice', 'alice-pw', 1)).status).toBe(200);
      // The sweep runs every 5 s.
      const out = await waitFor(
        srv.lines,
        (l) => srv.lines.indexOf(l) >= before && l.event === 'sign_out' && l.user === `alice@${DOMAIN}`,
        12_000,
      );
      expect(out.reason).toBe('expired');
    } finally {
      c.close();
    }
  });

  it('a wrong password is one warn line with stable keys and no secret', async () => {
    const c = await RawSipClient.open(srv.port);
    try {
      expect((await register(c, 'alice', 'not-her-password', 600)).status).toBe(401);
      const line = await waitFor(srv.lines, (l) => l.event === 'auth_failure');
      expect(line).toMatchObject({
        level: 'warn',
        user: 'alice',
        // The key sign_in and sign_out lines use, so one search finds all of alice's lines.
        aor: `alice@${DOMAIN}`,
        address: '127.0.0.1',
        reason: 'wrong_password',
        msg: 'authentication failed',
      });
      const text = JSON.stringify(srv.lines);
      expect(text).not.toMatch(/response=|Digest username/i);
      // Nothing per message at info.
      expect(srv.lines.some((l) => l.event === 'sip')).toBe(false);
    } finally {
      c.close();
    }
  });
});

describe('logging at debug: one line per SIP message, without credentials or bodies', () => {
  let srv: Awaited<ReturnType<typeof startLoggedServer>>;

  beforeAll(async () => {
    srv = await startLoggedServer('debug');
  });
  afterAll(async () => {
    await srv.stop();
  });

  it('summarises each request and response', async () => {
    const c = await RawSipClient.open(srv.port);
    try {
      expect((await register(c, 'alice', 'alice-pw', 600)).status).toBe(200);
      const body = 'the secret body text';
      const callId = fresh('msg');
      c.send(
        [
          `MESSAGE sip:nobody@${DOMAIN} SIP/2.0`,
          `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};rport;branch=${fresh('z9hG4bK')}`,
          'Max-Forwards: 70',
          `From: <sip:alice@${DOMAIN}>;tag=${fresh('t')}`,
          `To: <sip:nobody@${DOMAIN}>`,
          `Call-ID: ${callId}`,
          'CSeq: 1 MESSAGE',
          'Content-Type: text/plain',
          `Content-Length: ${body.length}`,
          '',
          body,
        ].join('\r\n'),
      );
      const answer = await c.response();
      const inbound = await waitFor(
        srv.lines,
        (l) => l.event === 'sip' && l.dir === 'in' && l.callId === callId,
      );
      expect(inbound).toMatchObject({
        level: 'debug',
        method: 'MESSAGE',
        cseq: 1,
        from: `sip:alice@${DOMAIN}`,
        to: `sip:nobody@${DOMAIN}`,
        uri: `sip:nobody@${DOMAIN}`,
        transport: 'tcp',
        address: `127.0.0.1:${c.localPort}`,
        bodyBytes: body.length,
      });
      const outbound = await waitFor(
        srv.lines,
        (l) => l.event === 'sip' && l.dir === 'out' && l.callId === callId,
      );
      expect(outbound).toMatchObject({ status: answer.status, method: 'MESSAGE', transport: 'tcp' });
      // The authenticated REGISTER was logged, its credentials were not.
      expect(srv.lines.some((l) => l.event === 'sip' && l.method === 'REGISTER' && l.dir === 'in')).toBe(
        true,
      );
      const text = JSON.stringify(srv.lines);
      expect(text).not.toContain(body);
      expect(text).not.toMatch(/Digest username|response="/);
    } finally {
      c.close();
    }
  });
});
