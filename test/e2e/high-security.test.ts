import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/ops/config.js';
import { runSyntheticTest } from '../../src/reports/synthetic.js';
import { runCli } from '../support/cli.js';
import { digestAnswer, fresh } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

const pki = (name: string) => resolve(import.meta.dirname, '../../fixtures/pki', name);

/** One request and its final response over a fresh TLS connection checked against the test CA. */
async function tlsExchange(
  port: number,
  requests: (previous?: string) => string | undefined,
): Promise<string[]> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ca: readFileSync(pki('ca.crt')),
  });
  await new Promise<void>((r, f) => {
    socket.once('secureConnect', () => r());
    socket.once('error', f);
  });
  const answers: string[] = [];
  let text = '';
  let next = requests();
  while (next !== undefined) {
    socket.write(next);
    const response = await new Promise<string>((done, fail) => {
      const onData = (d: Buffer) => {
        text += d.toString();
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = text.slice(0, end);
        text = text.slice(end + 4);
        if (/^SIP\/2\.0 1\d\d/.test(head)) return;
        socket.off('data', onData);
        done(head);
      };
      socket.on('data', onData);
      socket.once('error', fail);
    });
    answers.push(response);
    next = requests(response);
  }
  socket.destroy();
  return answers;
}

describe('security: high', () => {
  let t: TestServer;
  let tlsPort: number;
  beforeAll(async () => {
    t = await startTestServer({
      security: 'high',
      listen: { tls: { host: '127.0.0.1', port: 0 } },
      tls: { cert: pki('server.crt'), key: pki('server.key'), ca: pki('ca.crt'), requireClientCert: false },
    });
    tlsPort = t.server.listening.find((l) => l.transport === 'tls')!.port;
    await t.addUser('alice', 'secret');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('refuses plain TCP, UDP and WS listeners at configuration time', () => {
    const load = (extra: object) => () =>
      loadConfig({ cwd: '/tmp', env: {}, overrides: { security: 'high', ...extra } as never });
    expect(load({ listen: { tcp: { host: '0.0.0.0', port: 5060 } } })).toThrow(
      /listen\.tcp: highSecurity accepts TLS and WSS only/,
    );
    expect(load({ listen: { ws: { host: '0.0.0.0', port: 5066 } } })).toThrow(/listen\.ws/);
    expect(() =>
      loadConfig({ cwd: '/tmp', env: {}, overrides: { security: 'high', highSecurity: false } as never }),
    ).toThrow(/highSecurity: contradicts security: high/);
    expect(t.server.listening.map((l) => l.transport)).toEqual(['tls']);
  });

  it('signs a client in over TLS with a SHA-256 answer and answers an MD5 answer with a fresh SHA-256 challenge', async () => {
    const ok = await runSyntheticTest('sign-in', {
      server: `sip:127.0.0.1:${tlsPort};transport=tls`,
      as: { aor: `alice@${t.domain}`, password: 'secret' },
      ca: pki('ca.crt'),
    });
    expect(ok.steps.map((s) => [s.step, s.ok, s.detail])).toEqual([
      ['connect', true, `TLS 127.0.0.1:${tlsPort}`],
      ['sign-in', true, `alice@${t.domain} registered (200 OK)`],
      ['sign-out', true, 'binding removed'],
    ]);

    const register = (cseq: number, auth?: string) =>
      [
        `REGISTER sip:${t.domain} SIP/2.0`,
        `Via: SIP/2.0/TLS 127.0.0.1:5999;branch=${fresh('z9hG4bK')}`,
        `From: <sip:alice@${t.domain}>;tag=md5`,
        `To: <sip:alice@${t.domain}>`,
        'Call-ID: high-security-md5',
        `CSeq: ${cseq} REGISTER`,
        'Contact: <sip:alice@127.0.0.1:5999;transport=tls>',
        ...(auth ? [`Authorization: ${auth}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    // An MD5 answer (both HA1s are stored, so it would verify) is a downgrade: a fresh SHA-256
    // challenge, then the SHA-256 answer to it signs in.
    let answered = 0;
    const answers = await tlsExchange(tlsPort, (previous) => {
      if (previous === undefined) return register(1);
      if (!previous.startsWith('SIP/2.0 401') || answered === 2) return undefined;
      const challenges = previous.split('\r\n').filter((l) => /^WWW-Authenticate:/i.test(l));
      expect(challenges).toHaveLength(1);
      expect(challenges[0]).toMatch(/algorithm=SHA-256/);
      expect(challenges[0]).not.toMatch(/MD5/);
      answered++;
      return register(
        answered + 1,
        digestAnswer(challenges[0].replace(/^WWW-Authenticate: /i, ''), {
          user: 'alice',
          password: 'secret',
          method: 'REGISTER',
          uri: `sip:${t.domain}`,
          algorithm: answered === 1 ? 'MD5' : 'SHA-256',
        }),
      );
    });
    expect(answers.map((a) => a.split('\r\n')[0])).toEqual([
      'SIP/2.0 401 Unauthorized',
      'SIP/2.0 401 Unauthorized',
      'SIP/2.0 200 OK',
    ]);
    expect(
      await readMetric(t.server.httpUrl, 'parley_auth_failures_total', { reason: 'algorithm_not_offered' }),
    ).toBe(1);
  });

  it('says which mode runs in parley server status', async () => {
    const status = await runCli(['server', 'status', '--data-dir', t.dataDir, '--json']);
    expect(status.code, status.output).toBe(0);
    expect(JSON.parse(status.stdout).servers[0].health).toMatchObject({ security: 'high' });
    const human = await runCli(['server', 'status', '--data-dir', t.dataDir]);
    expect(human.stdout).toMatch(/^SERVER .*SECURITY$/m);
    expect(human.stdout).toMatch(/^test .* high$/m);
  });
});
