import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS, type SippUser, startSippUas } from '../support/sipp.js';

const scenario = (name: string) => join(SIPP_SCENARIOS, name);

describe('SIPp against a standard server over TCP', () => {
  let t: TestServer;
  const user = (name: string, extra?: string, password = 'secret'): SippUser => ({
    user: name,
    password,
    domain: t.domain,
    extra,
  });

  /** One SIPp run of a scenario over one TCP connection; every call must succeed. */
  async function sipp(name: string, users: SippUser[], calls: number, rate?: number): Promise<void> {
    const run = await runSipp([
      `127.0.0.1:${t.tcpPort}`,
      ...['-sf', scenario(name), '-inf', injectionFile(users), '-t', 't1', '-m', String(calls)],
      ...(rate ? ['-r', String(rate)] : []),
      ...['-timeout', '20s', '-timeout_error'],
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  }

  /** Bob as a SIPp UAS listening on its own port, registered there; runs fn, then stops it. */
  async function withBobAt(
    uasScenario: string,
    fn: (uas: ReturnType<typeof startSippUas>) => Promise<void>,
    uasCalls?: number,
  ) {
    const uasPort = await freePort();
    const uas = startSippUas(scenario(uasScenario), uasPort, uasCalls);
    try {
      await new Promise((r) => setTimeout(r, 300));
      await sipp('register-contact.xml', [user('bob', `127.0.0.1:${uasPort}`)], 1);
      await fn(uas);
    } finally {
      uas.stop();
    }
  }

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
    await sipp(
      'register-auth.xml',
      Array.from({ length: 20 }, (_, i) => user(`user${i}`)),
      20,
      100,
    );
    const health = (await (await fetch(`${t.server.httpUrl}/health`)).json()) as { signedInUsers: number };
    expect(health.signedInUsers).toBeGreaterThanOrEqual(20);
    const metrics = await (await fetch(`${t.server.httpUrl}/metrics`)).text();
    const value = (name: string) =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(metrics)?.[1] ?? NaN);
    expect(value('parley_active_users')).toBeGreaterThanOrEqual(20);
    expect(value('parley_registered_endpoints')).toBeGreaterThanOrEqual(20);
    expect(value('parley_signed_in_users')).toBeGreaterThanOrEqual(20);
    expect(value('parley_sip_transaction_seconds_count')).toBeGreaterThanOrEqual(40);
  });

  it('refuses a wrong password with a new challenge, as for an unknown user', async () => {
    await sipp(
      'register-wrong-password.xml',
      [user('user1', undefined, 'not-the-password'), user('nobody')],
      2,
    );
  });

  it('delivers MESSAGE from alice to a registered bob', async () => {
    await withBobAt('uas-message.xml', () => sipp('uac-message.xml', [user('alice', 'bob')], 50, 200));
  });

  it('subscribes to presence, gets NOTIFY, unsubscribes and gets the terminating NOTIFY', async () => {
    await sipp('subscribe-presence.xml', [user('bob', 'alice')], 1);
  });

  it('proxies a call: INVITE with Record-Route, ACK and BYE through the proxy', async () => {
    await withBobAt(
      'uas-invite.xml',
      async (uas) => {
        await sipp('uac-invite.xml', [user('alice', 'bob')], 1);
        // The callee's one call completed: INVITE, then the ACK and the BYE through the proxy.
        expect(await uas.exited).toBe(0);
      },
      1,
    );
  });

  it('cancels a ringing call: CANCEL reaches the callee and the caller gets 487', async () => {
    await withBobAt(
      'uas-ring.xml',
      async (uas) => {
        await sipp('uac-cancel.xml', [user('alice', 'bob')], 1);
        // The callee saw the CANCEL, answered 487 and got the ACK for it.
        expect(await uas.exited).toBe(0);
      },
      1,
    );
  });
});
