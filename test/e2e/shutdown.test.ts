import { describe, expect, it } from 'vitest';
import { TestClient } from '../support/jssip.js';
import { startTestServer } from '../support/server.js';

describe('graceful shutdown', () => {
  it('ends every subscription with a final NOTIFY (reason=deactivated) before closing', async () => {
    const t = await startTestServer();
    let stopped = false;
    try {
      await t.addUser('alice', 'a-secret');
      await t.addUser('bob', 'b-secret');
      const ws = `ws://127.0.0.1:${t.wsPort}`;
      const alice = await TestClient.signIn(ws, 'alice', t.domain, 'a-secret');
      const bob = await TestClient.signIn(ws, 'bob', t.domain, 'b-secret');
      const watch = bob.watch(`alice@${t.domain}`);
      await watch.until((n) => n.state.startsWith('active'));
      const final = watch.next((n) => n.state.startsWith('terminated'));
      await t.stop();
      stopped = true;
      const n = await final;
      expect(n.state).toMatch(/^terminated;\s*reason=deactivated/);
      expect(n.final).toBe(true);
      alice.ua.stop();
      bob.ua.stop();
    } finally {
      if (!stopped) await t.stop();
    }
  });
});
