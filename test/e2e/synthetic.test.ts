import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { TestClient } from '../support/jssip.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** `parley test sign-in|im|presence` from the built CLI against a started server. */
describe('parley test', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    for (const name of ['probe1', 'probe2', 'bob']) await t.addUser(name, `${name}-pw`);
  });
  afterAll(async () => {
    await t?.stop();
  });
  const test = (name: string, args: string[], env: Record<string, string> = {}) =>
    runCli(
      [
        'test',
        name,
        '--server',
        `sip:127.0.0.1:${t.tcpPort};transport=tcp`,
        '--domain',
        t.domain,
        '--json',
        ...args,
      ],
      { env: { PARLEY_TEST_PASSWORD: 'probe1-pw', ...env }, cwd: t.dataDir },
    );
  const steps = (stdout: string) =>
    (JSON.parse(stdout).steps as Array<{ step: string; ok: boolean; ms: number; detail: string }>).map(
      (s) => [s.step, s.ok],
    );

  it('sign-in passes with the right password and fails at sign-in with a wrong one', async () => {
    const ok = await test('sign-in', ['--as', 'probe1']);
    expect(ok.code, ok.output).toBe(0);
    expect(steps(ok.stdout)).toEqual([
      ['connect', true],
      ['sign-in', true],
      ['sign-out', true],
    ]);
    const bad = await test('sign-in', ['--as', 'probe1'], { PARLEY_TEST_PASSWORD: 'wrong' });
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false });
    expect(steps(bad.stdout)).toEqual([
      ['connect', true],
      ['sign-in', false],
    ]);
    // What to do, besides what happened.
    expect(JSON.parse(bad.stdout).steps[1].detail).toMatch(
      /^REGISTER answered 401 Unauthorized: the password was refused.*`parley users set-password probe1@/,
    );
    const human = await runCli(
      ['test', 'sign-in', '--as', 'probe1', '--server', `127.0.0.1:${t.tcpPort}`, '--domain', t.domain],
      {
        env: { PARLEY_TEST_PASSWORD: 'probe1-pw' },
        cwd: t.dataDir,
      },
    );
    expect(human.code, human.output).toBe(0);
    expect(human.stdout).toMatch(/^ok {4}connect +\d+ ms {2}TCP 127\.0\.0\.1:\d+$/m);
    expect(human.stdout).toMatch(/parley test sign-in: passed in \d+ ms/);
  });

  it('im fails at the send step, saying so, when the peer is offline, and passes end to end with --receive', async () => {
    const offline = await test('im', ['--as', 'probe1', '--to', 'bob']);
    expect(offline.code).toBe(1);
    const failed = (
      JSON.parse(offline.stdout).steps as Array<{ step: string; ok: boolean; detail: string }>
    ).at(-1);
    expect(failed).toMatchObject({
      step: 'send message',
      ok: false,
      detail: `bob@${t.domain} is not signed in (480 Temporarily Unavailable)`,
    });

    const both = await test('im', ['--as', 'probe1', '--to', 'probe2', '--receive'], {
      PARLEY_TEST_PEER_PASSWORD: 'probe2-pw',
    });
    expect(both.code, both.output).toBe(0);
    expect(steps(both.stdout)).toEqual([
      ['connect', true],
      ['sign-in', true],
      [`connect (probe2@${t.domain})`, true],
      [`sign-in (probe2@${t.domain})`, true],
      ['send message', true],
      ['receive message', true],
      [`sign-out (probe2@${t.domain})`, true],
      ['sign-out', true],
    ]);

    const bob = await TestClient.signIn(`ws://127.0.0.1:${t.wsPort}`, 'bob', t.domain, 'bob-pw');
    try {
      const received = bob.nextMessage(30_000); // spans the CLI's own start, seconds under load
      const online = await test('im', ['--as', 'probe1', '--to', 'bob']);
      expect(online.code, online.output).toBe(0);
      expect((await received).body).toMatch(/^parley test im /);

      const presence = await test('presence', ['--as', 'probe1', '--to', 'bob']);
      expect(presence.code, presence.output).toBe(0);
      expect(steps(presence.stdout)).toEqual([
        ['connect', true],
        ['sign-in', true],
        ['subscribe', true],
        ['notify', true],
        ['unsubscribe', true],
        ['sign-out', true],
      ]);
    } finally {
      await bob.stop();
    }
  });
});
