import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore, type Store } from '../../src/store/store.js';
import { runCli } from '../support/cli.js';
import { TestClient } from '../support/jssip.js';
import { digestAnswer, fresh, RawSipClient } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS } from '../support/sipp.js';

/** Client version control through real clients: SIPp with its User-Agent, JsSIP, a raw socket. */
describe('client version control', () => {
  let t: TestServer;
  let store: Store;
  const ws = () => `ws://127.0.0.1:${t.wsPort}`;
  const cli = (...args: string[]) => runCli([...args, '--data-dir', t.dataDir]);

  beforeAll(async () => {
    t = await startTestServer();
    store = createStore(t.server.db);
    for (const name of ['alice', 'bob', 'carol', 'sipp1', 'sipp2', 'raw']) await t.addUser(name, 'secret');
  });
  afterAll(async () => {
    await t?.stop();
  });

  async function sipp(scenario: string, user: string, userAgent: string) {
    return runSipp([
      `127.0.0.1:${t.tcpPort}`,
      ...['-sf', join(SIPP_SCENARIOS, scenario), '-t', 't1', '-m', '1'],
      ...['-inf', injectionFile([{ user, password: 'secret', domain: t.domain, extra: userAgent }])],
      ...['-timeout', '15s', '-timeout_error'],
    ]);
  }

  async function rawRegister(userAgent: string) {
    const c = await RawSipClient.open(t.tcpPort);
    const callId = fresh('call');
    const send = (cseq: number, auth?: string) =>
      c.send(
        [
          `REGISTER sip:${t.domain} SIP/2.0`,
          `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')}`,
          `From: <sip:raw@${t.domain}>;tag=${fresh('t')}`,
          `To: <sip:raw@${t.domain}>`,
          `Call-ID: ${callId}`,
          `CSeq: ${cseq} REGISTER`,
          `Contact: <sip:raw@127.0.0.1:${c.localPort};transport=tcp>`,
          `User-Agent: ${userAgent}`,
          ...(auth ? [`Authorization: ${auth}`] : []),
          'Expires: 300',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
    send(1);
    let r = await c.response();
    if (r.status === 401) {
      send(
        2,
        digestAnswer(r.header('www-authenticate') ?? '', {
          user: 'raw',
          password: 'secret',
          method: 'REGISTER',
          uri: `sip:${t.domain}`,
        }),
      );
      r = await c.response();
    }
    c.close();
    return r;
  }

  it('refuses a blocked SIPp build with 403 and a Warning naming the reason and URL, before any challenge', async () => {
    const rule = await cli(
      'clients',
      'policy',
      'add',
      'SIPp',
      '--versions',
      '<3.7',
      '--action',
      'upgrade',
      '--url',
      'https://intranet.example.com/sipp',
      '--reason',
      'old builds drop calls',
      '--json',
    );
    expect(rule.code, rule.output).toBe(0);
    expect(JSON.parse(rule.stdout)).toMatchObject({ position: 1, product: 'SIPp', action: 'upgrade' });

    // The server follows the store's feed: the old build is refused, the current one signs in.
    await expect
      .poll(async () => (await sipp('register-ua-refused.xml', 'sipp1', 'SIPp/3.6.1')).code, {
        timeout: 10_000,
      })
      .toBe(0);
    const allowed = await sipp('register-ua.xml', 'sipp2', 'SIPp/3.7.3');
    expect(allowed.code, allowed.stdout + allowed.stderr).toBe(0);

    const refused = await rawRegister('SIPp/3.6.1');
    expect(refused.status).toBe(403);
    expect(refused.startLine).toContain('Client Upgrade Required');
    expect(refused.header('warning')).toBe(
      `399 ${t.domain} "SIPp 3.6.1 is no longer allowed: old builds drop calls; upgrade at https://intranet.example.com/sipp"`,
    );
    expect(
      await readMetric(t.server.httpUrl, 'parley_client_refusals_total', { action: 'upgrade' }),
    ).toBeGreaterThanOrEqual(2);

    const tested = await cli('clients', 'policy', 'test', 'SIPp/3.6.1', '--json');
    expect(JSON.parse(tested.stdout)).toMatchObject({ action: 'upgrade', product: 'SIPp', version: '3.6.1' });
    expect(JSON.parse(tested.stdout).explanation).toMatch(/rule 1 .*SIPp 3\.6\.1/);
  });

  it('refuses a signed-in JsSIP endpoint at its next MESSAGE, SUBSCRIBE refresh and REGISTER once a rule blocks it', async () => {
    const alice = await TestClient.signIn(ws(), 'alice', t.domain, 'secret');
    const bob = await TestClient.signIn(ws(), 'bob', t.domain, 'secret');
    try {
      const arrived = bob.nextMessage();
      await alice.sendMessage(`bob@${t.domain}`, 'before');
      expect((await arrived).body).toBe('before');
      const watch = alice.watch(`bob@${t.domain}`);
      await watch.until((n) => n.state.startsWith('active'));

      const report = await cli('clients', 'report', '--json');
      expect(report.code, report.output).toBe(0);
      expect(JSON.parse(report.stdout).clients).toContainEqual(
        expect.objectContaining({ product: 'JsSIP', endpoints: 2, action: 'allow' }),
      );

      // Exceptions above broad rules: bob's build is kept, every other JsSIP is blocked.
      const block = await store.clientPolicies.add({
        product: 'JsSIP',
        versions: '*',
        action: 'block',
        reason: 'use the desktop client',
      });
      await store.clientPolicies.add({ product: 'carol-only-client', versions: '*', action: 'allow' });
      expect((await store.clientPolicies.list()).map((r) => r.product)).toEqual([
        'SIPp',
        'JsSIP',
        'carol-only-client',
      ]);

      // Allowed before the rule changed; refused at its next message.
      await expect
        .poll(
          () =>
            alice.sendMessage(`bob@${t.domain}`, 'after').then(
              () => 'sent',
              (e: Error) => e.message,
            ),
          {
            timeout: 10_000,
          },
        )
        .toMatch(/403/);

      // Its subscription's next refresh is refused.
      const ended = new Promise<void>((resolve) => watch.subscriber.once('terminated', () => resolve()));
      watch.subscriber.subscribe();
      await ended;

      // And a new sign-in.
      await expect(TestClient.signIn(ws(), 'carol', t.domain, 'secret')).rejects.toThrow(/403/);

      const afterReport = await cli('clients', 'report');
      expect(afterReport.stdout).toMatch(/JsSIP\s+3\.\d+\.\d+\s+2\s+block/);
      expect(afterReport.stdout).toContain('refused at their next refresh');

      // Removing the rule lets JsSIP back in without a restart.
      const removed = await cli('clients', 'policy', 'remove', String(block.id), '--json');
      expect(removed.code, removed.output).toBe(0);
      await expect
        .poll(
          () =>
            alice.sendMessage(`bob@${t.domain}`, 'again').then(
              () => 'sent',
              (e: Error) => e.message,
            ),
          {
            timeout: 10_000,
          },
        )
        .toBe('sent');
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  it('lists, moves and sets the default through the CLI, with catalogued failures', async () => {
    const list = await cli('clients', 'policy', 'list', '--json');
    const rules = JSON.parse(list.stdout).rules as Array<{ id: number; product: string }>;
    expect(rules.map((r) => r.product)).toEqual(['SIPp', 'carol-only-client']);
    const moved = await cli('clients', 'policy', 'move', String(rules[1].id), '--to', '1', '--json');
    expect(JSON.parse(moved.stdout)).toMatchObject({ position: 1 });

    const missing = await cli('clients', 'policy', 'remove', '9999', '--json');
    expect(missing.code).toBe(3);
    expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: 'CLIENT_RULE_NOT_FOUND' } });
    const bad = await cli(
      'clients',
      'policy',
      'add',
      'JsSIP',
      '--versions',
      '~3',
      '--action',
      'block',
      '--json',
    );
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ error: { code: 'CLIENT_RULE_INVALID' } });
    const noUrl = await cli('clients', 'policy', 'add', 'JsSIP', '--action', 'upgrade');
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toMatch(/needs --url/);

    // Default block: a client no rule names is refused; removing bindings is always allowed.
    const d = await cli(
      'clients',
      'policy',
      'default',
      'block',
      '--reason',
      'only supported clients',
      '--json',
    );
    expect(JSON.parse(d.stdout)).toMatchObject({
      default: { action: 'block' },
      previous: { action: 'allow' },
    });
    await expect.poll(async () => (await rawRegister('Unknown/1.0')).status, { timeout: 10_000 }).toBe(403);
    expect((await rawRegister('SIPp/3.8')).status).toBe(403);
    await cli('clients', 'policy', 'default', 'allow');
    await expect.poll(async () => (await rawRegister('Unknown/1.0')).status, { timeout: 10_000 }).toBe(200);
  });
});
