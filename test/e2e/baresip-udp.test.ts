import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Baresip } from '../support/baresip.js';
import { pidf, TestClient } from '../support/jssip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

/**
 * baresip, a desktop client nobody here wrote, with an account that names no transport: it
 * starts on UDP (RFC 3261 18) and must sign in, chat and see presence as over TCP.
 */
describe('baresip over UDP', () => {
  let srv: TestServer;
  let udpPort: number;

  beforeAll(async () => {
    srv = await startTestServer({
      listen: {
        udp: { host: '127.0.0.1', port: 0 },
        tcp: { host: '127.0.0.1', port: 0 },
        ws: { host: '127.0.0.1', port: 0 },
      },
    });
    udpPort = srv.server.listening.find((l) => l.transport === 'udp')?.port ?? 0;
    await srv.addUser('alice', 'alice-pw');
    await srv.addUser('bob', 'bob-pw');
  });

  afterAll(async () => {
    await srv.stop();
  });

  it('signs in with no transport= parameter, chats both ways and sees presence both ways', async () => {
    expect(udpPort).toBeGreaterThan(0);
    const bob = await TestClient.signIn(`ws://127.0.0.1:${srv.wsPort}`, 'bob', srv.domain, 'bob-pw');
    const alice = await Baresip.start({
      user: 'alice',
      domain: srv.domain,
      password: 'alice-pw',
      proxy: `sip:127.0.0.1:${udpPort}`,
      watch: [`bob@${srv.domain}`],
      messageTo: `bob@${srv.domain}`,
    });
    try {
      await alice.waitFor(/200 OK|registered/i);
      await alice.waitFor(/\{0\/UDP\/v4\} 200 OK/);
      expect(await readMetric(srv.server.httpUrl, 'parley_registered_endpoints')).toBe(2);
      // Bob watches alice: baresip publishes itself online.
      const watch = bob.watch(`alice@${srv.domain}`);
      await watch.until((n) => n.body.includes('<basic>open</basic>'), 10_000);
      // Alice (baresip) watches bob.
      expect((await bob.publish(pidf(`bob@${srv.domain}`, 'open', 'busy'))).status).toBe(200);
      await waitUntil(async () => /busy|online/i.test(await alice.command('contacts')), 10_000);
      // Bob writes to alice: baresip takes it (200) from a UDP datagram.
      await bob.sendMessage(`alice@${srv.domain}`, 'hello over udp');
      await alice.waitFor(/hello over udp/, 5000);
      expect(alice.output.join('\n')).toMatch(
        /UDP 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+\s*\r?\n?MESSAGE sip:alice/,
      );
      // Alice answers (her client's message command, to the current contact).
      await alice.command('message', 'hi bob from baresip');
      const m = await bob.nextMessage(5000);
      expect(m).toEqual({ from: 'alice', body: 'hi bob from baresip' });
    } finally {
      await alice.stop();
      await bob.stop();
    }
  }, 60_000);
});

async function waitUntil(test: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}
