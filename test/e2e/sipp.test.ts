import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS, startSippUas } from '../support/sipp.js';

const scenario = (name: string) => join(SIPP_SCENARIOS, name);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe('SIPp against a standard server over TCP', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    for (let i = 0; i < 20; i++) await t.addUser(`user${i}`, 'secret');
    await t.addUser('alice', 'secret');
    await t.addUser('bob', 'secret');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('registers 20 users with digest authentication', async () => {
    const users = Array.from({ length: 20 }, (_, i) => ({
      user: `user${i}`,
      password: 'secret',
      domain: t.domain,
    }));
    const run = await runSipp([
      `127.0.0.1:${t.tcpPort}`,
      '-sf',
      scenario('register-auth.xml'),
      '-inf',
      injectionFile(users),
      '-t',
      't1',
      '-m',
      '20',
      '-r',
      '100',
      '-timeout',
      '20s',
      '-timeout_error',
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const health = (await (await fetch(`${t.server.httpUrl}/health`)).json()) as { signedInUsers: number };
    expect(health.signedInUsers).toBeGreaterThanOrEqual(20);
  });

  it('refuses a wrong password with a new challenge, as for an unknown user', async () => {
    const wrong = [
      { user: 'user1', password: 'not-the-password', domain: t.domain },
      { user: 'nobody', password: 'secret', domain: t.domain },
    ];
    const run = await runSipp([
      `127.0.0.1:${t.tcpPort}`,
      '-sf',
      scenario('register-wrong-password.xml'),
      '-inf',
      injectionFile(wrong),
      '-t',
      't1',
      '-m',
      '2',
      '-timeout',
      '20s',
      '-timeout_error',
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  });

  it('delivers MESSAGE from alice to a registered bob', async () => {
    const uasPort = await freePort();
    const uas = startSippUas(scenario('uas-message.xml'), uasPort);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const reg = await runSipp([
        `127.0.0.1:${t.tcpPort}`,
        '-sf',
        scenario('register-contact.xml'),
        '-inf',
        injectionFile([{ user: 'bob', password: 'secret', domain: t.domain, extra: `127.0.0.1:${uasPort}` }]),
        '-t',
        't1',
        '-m',
        '1',
        '-timeout',
        '20s',
        '-timeout_error',
      ]);
      expect(reg.code, reg.stdout + reg.stderr).toBe(0);
      const send = await runSipp([
        `127.0.0.1:${t.tcpPort}`,
        '-sf',
        scenario('uac-message.xml'),
        '-inf',
        injectionFile([{ user: 'alice', password: 'secret', domain: t.domain, extra: 'bob' }]),
        '-t',
        't1',
        '-m',
        '50',
        '-r',
        '200',
        '-timeout',
        '20s',
        '-timeout_error',
      ]);
      expect(send.code, send.stdout + send.stderr).toBe(0);
    } finally {
      uas.stop();
    }
  });

  it('subscribes to presence, gets NOTIFY, unsubscribes and gets the terminating NOTIFY', async () => {
    const run = await runSipp([
      `127.0.0.1:${t.tcpPort}`,
      '-sf',
      scenario('subscribe-presence.xml'),
      '-inf',
      injectionFile([{ user: 'bob', password: 'secret', domain: t.domain, extra: 'alice' }]),
      '-t',
      't1',
      '-m',
      '1',
      '-timeout',
      '20s',
      '-timeout_error',
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  });

  it('proxies a call: INVITE with Record-Route, ACK and BYE through the proxy', async () => {
    const uasPort = await freePort();
    const uas = startSippUas(scenario('uas-invite.xml'), uasPort);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const reg = await runSipp([
        `127.0.0.1:${t.tcpPort}`,
        '-sf',
        scenario('register-contact.xml'),
        '-inf',
        injectionFile([{ user: 'bob', password: 'secret', domain: t.domain, extra: `127.0.0.1:${uasPort}` }]),
        '-t',
        't1',
        '-m',
        '1',
        '-timeout',
        '20s',
        '-timeout_error',
      ]);
      expect(reg.code, reg.stdout + reg.stderr).toBe(0);
      const call = await runSipp([
        `127.0.0.1:${t.tcpPort}`,
        '-sf',
        scenario('uac-invite.xml'),
        '-inf',
        injectionFile([{ user: 'alice', password: 'secret', domain: t.domain, extra: 'bob' }]),
        '-t',
        't1',
        '-m',
        '1',
        '-timeout',
        '20s',
        '-timeout_error',
      ]);
      expect(call.code, call.stdout + call.stderr).toBe(0);
      expect(await Promise.race([uas.exited, new Promise((r) => setTimeout(() => r('running'), 3000))])).toBe(
        'running',
      );
    } finally {
      uas.stop();
    }
  });

  it('cancels a ringing call: CANCEL reaches the callee and the caller gets 487', async () => {
    const uasPort = await freePort();
    const uas = startSippUas(scenario('uas-ring.xml'), uasPort);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const reg = await runSipp([
        `127.0.0.1:${t.tcpPort}`,
        '-sf',
        scenario('register-contact.xml'),
        '-inf',
        injectionFile([{ user: 'bob', password: 'secret', domain: t.domain, extra: `127.0.0.1:${uasPort}` }]),
        '-t',
        't1',
        '-m',
        '1',
        '-timeout',
        '20s',
        '-timeout_error',
      ]);
      expect(reg.code, reg.stdout + reg.stderr).toBe(0);
      const call = await runSipp([
        `127.0.0.1:${t.tcpPort}`,
        '-sf',
        scenario('uac-cancel.xml'),
        '-inf',
        injectionFile([{ user: 'alice', password: 'secret', domain: t.domain, extra: 'bob' }]),
        '-t',
        't1',
        '-m',
        '1',
        '-timeout',
        '20s',
        '-timeout_error',
      ]);
      expect(call.code, call.stdout + call.stderr).toBe(0);
    } finally {
      uas.stop();
    }
  });
});
