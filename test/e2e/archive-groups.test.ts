import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore, type Store } from '../../src/store/store.js';
import { runCli } from '../support/cli.js';
import { TestClient } from '../support/jssip.js';
import { startTestServer, type TestServer } from '../support/server.js';

/**
 * archiving.groups through real clients (JsSIP): only messages of the group's members are
 * archived, and a membership written by replication (GroupRepository.replaceMemberships,
 * what `parley directory replicate` calls; slapd in test/directory/groups.test.ts) takes
 * effect in the running server at once.
 */
describe('archiving per directory group', () => {
  let t: TestServer;
  let store: Store;
  const ws = () => `ws://127.0.0.1:${t.wsPort}`;
  const aor = (name: string) => `${name}@${t.domain}`;

  beforeAll(async () => {
    t = await startTestServer({ archiving: { enabled: true, groups: ['Trading'], flushMs: 20 } });
    store = createStore(t.server.db);
    for (const name of ['alice', 'bob', 'carol']) await t.addUser(name, 'secret');
    await store.groups.replaceMemberships('ldap:central', [{ group: 'trading', aor: aor('alice') }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('archives members only, and follows a membership change without a restart', async () => {
    const [alice, bob, carol] = await Promise.all(
      ['alice', 'bob', 'carol'].map((n) => TestClient.signIn(ws(), n, t.domain, 'secret')),
    );
    const bodies = async () => (await store.archive.search({ limit: 20 })).map((r) => r.body);
    try {
      await alice.sendMessage(aor('bob'), 'from a trader');
      await bob.sendMessage(aor('alice'), 'to a trader');
      await carol.sendMessage(aor('bob'), 'not archived');
      await expect.poll(bodies).toEqual(['from a trader', 'to a trader']);

      await store.groups.replaceMemberships('ldap:central', [
        { group: 'trading', aor: aor('alice') },
        { group: 'Trading', aor: aor('carol') },
      ]);
      await expect
        .poll(async () => {
          await carol.sendMessage(aor('bob'), 'carol joined');
          return (await bodies()).includes('carol joined');
        })
        .toBe(true);
      await bob.sendMessage(aor('carol'), 'to carol');
      await expect.poll(async () => (await bodies()).at(-1)).toBe('to carol');
      expect(await bodies()).not.toContain('not archived');
    } finally {
      await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
    }
    const shown = await runCli(['users', 'show', aor('carol'), '--data-dir', t.dataDir, '--json']);
    expect(shown.code, shown.output).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ groups: ['trading'] });
  });
});
