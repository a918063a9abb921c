import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replaceContactList } from '../../src/contacts/lists.js';
import { StorePresencePolicy } from '../../src/presence/policy-store.js';
import { type PublishedState, SharedPublicationStore } from '../../src/presence/publications.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { PublicationRepository } from '../../src/store/publications.js';
import type { Sql } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { createTestDatabase } from '../support/database.js';

// The presence server's store-backed ports, on the embedded engine (the SQL itself is in
// the store contract, test/store/contract.ts).
let db: PgliteDatabase;
let store: Store;

beforeAll(async () => {
  db = await createTestDatabase();
  store = createStore(db);
});
afterAll(async () => {
  await db?.close();
});

describe('SharedPublicationStore', () => {
  const second = (offset: number) => Math.floor(Date.now() / 1000) * 1000 + offset * 1000;
  const state = (etag: string, extra: Partial<PublishedState> = {}): PublishedState => ({
    aor: 'alice@example.com',
    etag,
    body: `<presence entity="sip:alice@example.com"><!-- ${etag} --></presence>`,
    updatedAt: second(-10),
    expiresAt: second(600),
    ...extra,
  });

  it("keeps what endpoints publish under this server's id, and tells listeners on every change", async () => {
    const fe1 = new SharedPublicationStore(store.publications, db, 'fe1');
    const changed: string[] = [];
    const stop = await fe1.onChange((aor) => changed.push(aor));
    try {
      // Built once: a second boundary passing between save and compare must not move its times.
      const e1 = state('e1');
      await fe1.save(e1);
      await fe1.save(state('e2', { updatedAt: second(-20) }));
      expect(await fe1.get('alice@example.com', 'e1')).toEqual(e1);
      expect((await fe1.list('alice@example.com')).map((s) => s.etag)).toEqual(['e2', 'e1']);
      expect(await store.publications.get('alice@example.com', 'e1')).toMatchObject({
        serverId: 'fe1',
        contentType: 'application/pidf+xml',
      });
      expect(await fe1.remove('alice@example.com', 'e1', true)).toBe(false);
      expect(await fe1.remove('alice@example.com', 'e1')).toBe(true);
      expect(await fe1.removeAll('alice@example.com')).toBe(1);
      await expect.poll(() => changed.length).toBe(4);
      expect(new Set(changed)).toEqual(new Set(['alice@example.com']));
    } finally {
      await stop();
    }
  });
});

describe('SharedPublicationStore: users signed out together', () => {
  const pub = (aor: string, etag: string): PublishedState => ({
    aor,
    etag,
    body: `<presence entity="sip:${aor}"/>`,
    updatedAt: Date.now(),
    expiresAt: Date.now() + 600_000,
  });

  it('removes the states of users who published, through any server, and asks nothing for the others', async () => {
    // What the store held before this server followed the feed counts too.
    await store.publications.save({
      ...pub('old@example.com', 'o1'),
      contentType: 'application/pidf+xml',
      updatedAt: new Date(),
      expiresAt: new Date(Date.now() + 600_000),
      serverId: 'fe0',
    });
    const statements: string[] = [];
    const counted: Sql = {
      query: (text, params) => {
        statements.push(text);
        return db.query(text, params);
      },
      exec: (script) => db.exec(script),
      transaction: (fn) => db.transaction(fn),
    };
    const fe1 = new SharedPublicationStore(new PublicationRepository(counted), db, 'fe1');
    const fe2 = new SharedPublicationStore(store.publications, db, 'fe2');
    const heard: string[] = [];
    const stop = await fe1.onChange((aor) => heard.push(aor));
    try {
      await fe1.save(pub('alice@example.com', 'a1'));
      await fe2.save(pub('carol@example.com', 'c1'));
      await expect.poll(() => heard.includes('carol@example.com')).toBe(true);
      const never = Array.from({ length: 5_000 }, (_, i) => `user${i}@example.com`);
      statements.length = 0;
      expect(await fe1.removeAllOf(never)).toBe(0);
      expect(statements).toEqual([]);
      expect(
        await fe1.removeAllOf([...never, 'old@example.com', 'alice@example.com', 'carol@example.com']),
      ).toBe(3);
      expect(statements).toHaveLength(1);
      expect(await store.publications.publishedAors()).toEqual([]);
      // Published again after its sign-out: known again (here through the feed).
      await fe2.save(pub('carol@example.com', 'c2'));
      await expect.poll(() => heard.filter((a) => a === 'carol@example.com').length).toBeGreaterThan(2);
      expect(await fe1.removeAllOf(['carol@example.com'])).toBe(1);
    } finally {
      await stop();
    }
  });
});

describe('StorePresencePolicy', () => {
  it('answers from the credential cache when it knows, from the store otherwise', async () => {
    const alice = await store.users.createUser({ aor: 'alice@example.com' });
    await store.users.createUser({ aor: 'off@example.com', enabled: false });
    const policy = new StorePresencePolicy(store, (aor) => (aor === 'cached@example.com' ? true : undefined));
    expect(await policy.userExists('cached@example.com')).toBe(true);
    expect(await policy.userExists('alice@example.com')).toBe(true);
    expect(await policy.userExists('off@example.com')).toBe(false);
    expect(await policy.userExists('nobody@example.com')).toBe(false);

    await replaceContactList(store.contactLists, alice.id, {
      user: 'sip:alice@example.com',
      version: 0,
      groups: [],
      contacts: [],
      accessRules: [
        { pattern: 'sip:eve@example.com', action: 'block' },
        { pattern: 'example.com', action: 'allow' },
      ],
    });
    expect(
      (await policy.accessRules('alice@example.com')).sort((a, b) => a.pattern.localeCompare(b.pattern)),
    ).toEqual([
      { pattern: 'example.com', action: 'allow' },
      { pattern: 'sip:eve@example.com', action: 'block' },
    ]);
    expect(await policy.accessRules('nobody@example.com')).toEqual([]);
  });
});
