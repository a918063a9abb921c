import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pidf, TestClient } from '../support/jssip.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('JsSIP clients over WebSocket on a standard server', () => {
  let t: TestServer;
  let ws: string;
  const clients: TestClient[] = [];
  beforeAll(async () => {
    t = await startTestServer();
    await t.addUser('alice', 'alice-secret');
    await t.addUser('bob', 'bob-secret');
    ws = `ws://127.0.0.1:${t.wsPort}`;
  });
  afterAll(async () => {
    for (const c of clients) await c.stop();
    await t?.stop();
  });

  it('refuses a wrong password', async () => {
    await expect(TestClient.signIn(ws, 'alice', t.domain, 'wrong')).rejects.toThrow(/registration failed/);
    await expect(TestClient.signIn(ws, 'mallory', t.domain, 'whatever')).rejects.toThrow(/registration failed/);
  });

  it('alice and bob sign in, bob watches alice go away, they chat, alice signs out', async () => {
    const alice = await TestClient.signIn(ws, 'alice', t.domain, 'alice-secret');
    const bob = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    clients.push(alice, bob);

    const watch = bob.watch(`alice@${t.domain}`);
    // Nothing published yet: alice shows closed.
    await watch.until((n) => n.state.startsWith('active') && n.body.includes('<basic>closed</basic>'));

    const first = await alice.publish(pidf(`alice@${t.domain}`, 'open', undefined, 'Available'));
    expect(first.status).toBe(200);
    expect(first.etag).toBeTruthy();
    await watch.until((n) => n.body.includes('<basic>open</basic>'));

    const away = await alice.publish(pidf(`alice@${t.domain}`, 'open', 'away', 'Back soon'), { etag: first.etag });
    expect(away.status).toBe(200);
    const seen = await watch.until((n) => /away/.test(n.body));
    expect(seen.body).toContain('Back soon');

    const incoming = bob.nextMessage();
    await alice.sendMessage(`bob@${t.domain}`, 'Hello Bob');
    expect(await incoming).toEqual({ from: 'alice', body: 'Hello Bob' });
    const reply = alice.nextMessage();
    await bob.sendMessage(`alice@${t.domain}`, 'Hi Alice, ça va?');
    expect(await reply).toEqual({ from: 'bob', body: 'Hi Alice, ça va?' });

    // Alice signs out: her presence goes offline for bob.
    const offline = watch.next((n) => n.body.includes('<basic>closed</basic>'));
    await alice.stop();
    clients.splice(clients.indexOf(alice), 1);
    await offline;
  });

  it('answers 480 for a known user who is offline and 404 for an unknown one', async () => {
    const bob = await TestClient.signIn(ws, 'bob', t.domain, 'bob-secret');
    clients.push(bob);
    await expect(bob.sendMessage(`alice@${t.domain}`, 'are you there?')).rejects.toThrow(/480/);
    await expect(bob.sendMessage(`nobody@${t.domain}`, 'hello?')).rejects.toThrow(/404/);
  });
});
