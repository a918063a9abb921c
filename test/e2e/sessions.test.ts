import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { TestClient } from '../support/jssip.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS } from '../support/sipp.js';

/** `parley server sessions` against a running server with JsSIP clients signed in and watching. */
describe('parley server sessions', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({
      listen: {
        udp: { host: '127.0.0.1', port: 0 },
        tcp: { host: '127.0.0.1', port: 0 },
        ws: { host: '127.0.0.1', port: 0 },
      },
    });
    for (const name of ['alice', 'bob', 'carol', 'dave']) await t.addUser(name, 'secret');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('shows endpoints with address, transport and client, and the subscriptions held', async () => {
    const ws = `ws://127.0.0.1:${t.wsPort}`;
    const alice = await TestClient.signIn(ws, 'alice', t.domain, 'secret');
    const bob = await TestClient.signIn(ws, 'bob', t.domain, 'secret');
    try {
      const watch = alice.watch(`bob@${t.domain}`);
      await watch.until((n) => n.state.startsWith('active'));
      const cli = (...args: string[]) =>
        runCli(['server', 'sessions', '--data-dir', t.dataDir, '--domain', t.domain, ...args]);

      const all = await cli('--json');
      expect(all.code, all.output).toBe(0);
      const sessions = JSON.parse(all.stdout);
      expect(sessions.servers).toEqual([{ id: 'test', reachable: true, users: 2 }]);
      const aliceSession = sessions.users.find((u: { aor: string }) => u.aor === `alice@${t.domain}`);
      expect(aliceSession).toMatchObject({ server: 'test', watching: [`bob@${t.domain}`], watchedBy: [] });
      expect(aliceSession.endpoints).toHaveLength(1);
      expect(aliceSession.endpoints[0]).toMatchObject({
        transport: 'ws',
        userAgent: expect.stringMatching(/^JsSIP /),
      });
      expect(aliceSession.endpoints[0].address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(aliceSession.endpoints[0].expiresInSeconds).toBeGreaterThan(200);
      // Each subscription alice holds, with its event package, state and expiry.
      const presence = aliceSession.subscriptions.filter((s: { event: string }) => s.event === 'presence');
      expect(presence).toEqual([
        {
          event: 'presence',
          target: `bob@${t.domain}`,
          state: 'active',
          expiresInSeconds: expect.any(Number),
        },
      ]);
      expect(presence[0].expiresInSeconds).toBeGreaterThan(60);
      expect(presence[0].expiresInSeconds).toBeLessThanOrEqual(7200);

      const one = await cli('--user', 'bob', '--json');
      expect(JSON.parse(one.stdout).users).toEqual([
        expect.objectContaining({ aor: `bob@${t.domain}`, watchedBy: [`alice@${t.domain}`], watching: [] }),
      ]);
      const human = await cli('--user', 'alice');
      expect(human.stdout).toMatch(
        /alice@example\.com {2}\(on test\)\n {2}endpoint {2}127\.0\.0\.1:\d+ ws {2}JsSIP/,
      );
      expect(human.stdout).toMatch(
        /^ {2}subscribed presence bob@example\.com {2}active {2}expires in \d+ s$/m,
      );

      // Without the store's secret the endpoint says nothing.
      const anonymous = await fetch(`${t.server.httpUrl}/sessions`);
      expect(anonymous.status).toBe(401);
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  it('shows the transport and address of endpoints whose REGISTER came over UDP or over a connection now closed', async () => {
    const udpPort = t.server.listening.find((l) => l.transport === 'udp')?.port ?? 0;
    // SIPp registers a Contact elsewhere (as a desk phone's provisioning tool would) and exits:
    // over TCP its connection closes; over UDP there never was one.
    for (const [user, transport, port] of [
      ['carol', 't1', t.tcpPort],
      ['dave', 'u1', udpPort],
    ] as const) {
      const run = await runSipp([
        `127.0.0.1:${port}`,
        ...['-sf', join(SIPP_SCENARIOS, 'register-contact.xml'), '-t', transport, '-m', '1'],
        ...['-inf', injectionFile([{ user, password: 'secret', domain: t.domain, extra: '192.0.2.7:5060' }])],
        ...['-timeout', '20s', '-timeout_error'],
      ]);
      expect(run.code, run.stdout + run.stderr).toBe(0);
    }
    const out = await runCli(['server', 'sessions', '--data-dir', t.dataDir, '--domain', t.domain, '--json']);
    expect(out.code, out.output).toBe(0);
    const users = JSON.parse(out.stdout).users as Array<{
      aor: string;
      endpoints: Array<{ transport: string | null; address: string | null; userAgent: string }>;
    }>;
    const endpoint = (name: string) => users.find((u) => u.aor === `${name}@${t.domain}`)?.endpoints[0];
    expect(endpoint('carol')).toMatchObject({
      transport: 'tcp',
      address: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
    expect(endpoint('dave')).toMatchObject({
      transport: 'udp',
      address: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
  });
});
