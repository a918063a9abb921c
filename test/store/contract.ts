import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Join } from '../../src/store/directory-journal.js';
import { FEDERATION_CHANNEL } from '../../src/store/federation.js';
import { appliedMigrations, currentVersion, loadMigrations, migrate } from '../../src/store/migrate.js';
import type { NewBinding } from '../../src/store/registrations.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import type { Subscription } from '../../src/store/subscriptions.js';
import { type DirectoryUser, USERS_CHANNEL, UserExistsError } from '../../src/store/users.js';

export interface EngineFactory {
  /** A fresh, empty (not migrated) database. */
  create(): Promise<Database>;
  /** Releases what the factory started (servers, folders). */
  teardown?(): Promise<void>;
}

const TABLES = [
  'users',
  'homes',
  'registrations',
  'presence_publications',
  'subscriptions',
  'servers',
  'credentials',
];

const T0 = new Date('2030-01-01T00:00:00Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

function binding(
  aor: string,
  contact: string,
  expiresIn: number,
  extra: Partial<NewBinding> = {},
): NewBinding {
  return {
    aor,
    contact,
    callId: `call-${contact}`,
    cseq: 1,
    expiresAt: at(expiresIn),
    serverId: 'fe1',
    flowId: `flow-${contact}`,
    ...extra,
  };
}

function subscription(id: string, extra: Partial<Subscription> = {}): Subscription {
  return {
    id,
    event: 'presence',
    presentity: 'alice@example.com',
    watcher: 'bob@example.com',
    callId: `call-${id}`,
    localTag: 'lt',
    remoteTag: 'rt',
    remoteTarget: 'sip:bob@10.0.0.2:5060;transport=tcp',
    routeSet: ['<sip:edge.example.com;lr>', '<sip:dir.example.com;lr>'],
    localCseq: 0,
    expiresAt: at(3600),
    status: 'active',
    serverId: 'fe1',
    flowId: 'flow-1',
    ...extra,
  };
}

/** The store contract: every engine must pass all of it (STYLE habit 4). */
export function defineStoreContract(engine: string, factory: EngineFactory): void {
  describe(`store contract: ${engine}`, () => {
    let db: Database;
    let store: Store;

    beforeAll(async () => {
      db = await factory.create();
      const first = await migrate(db);
      expect(first.applied.map((m) => m.version)).toEqual(loadMigrations().map((m) => m.version));
      store = createStore(db);
    });

    afterAll(async () => {
      await db?.close();
      await factory.teardown?.();
    });

    beforeEach(async () => {
      await db.exec(`TRUNCATE ${TABLES.join(', ')} CASCADE`);
    });

    describe('migrations', () => {
      it('re-running applies nothing and keeps the version', async () => {
        const before = await currentVersion(db);
        const again = await migrate(db);
        expect(again.applied).toEqual([]);
        expect(again.current).toBe(before);
        const applied = await appliedMigrations(db);
        expect(applied[0]).toMatchObject({ version: 1, name: 'core' });
      });

      it('applies a new migration once, in a transaction', async () => {
        const extra = [
          ...loadMigrations(),
          {
            version: 9001,
            name: 'contract_probe',
            sql: 'CREATE TABLE contract_probe (x int); INSERT INTO contract_probe VALUES (1);',
          },
        ];
        const [a, b] = await Promise.all([migrate(db, extra), migrate(db, extra)]);
        expect([...a.applied, ...b.applied]).toEqual([{ version: 9001, name: 'contract_probe' }]);
        const rows = await db.query('SELECT x FROM contract_probe');
        expect(rows.rows).toHaveLength(1);
        const broken = [
          ...extra,
          { version: 9002, name: 'broken', sql: 'CREATE TABLE probe2 (x int); SELECT nope;' },
        ];
        await expect(migrate(db, broken)).rejects.toThrow();
        const probe2 = await db.query("SELECT to_regclass('probe2') AS t");
        expect(probe2.rows[0]).toEqual({ t: null });
        expect(await currentVersion(db)).toBe(9001);
        await db.exec('DROP TABLE contract_probe; DELETE FROM schema_migrations WHERE version = 9001');
      });
    });

    describe('transactions', () => {
      it('commits all or nothing', async () => {
        await expect(
          store.transaction(async (tx) => {
            await tx.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1' });
            await tx.users.createUser({ aor: 'rolled@example.com', home: 'pool1' });
            throw new Error('abort');
          }),
        ).rejects.toThrow('abort');
        expect(await store.homes.listHomes()).toEqual([]);
        expect(await store.users.getUser('rolled@example.com')).toBeUndefined();
        await store.transaction(async (tx) => {
          await tx.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1' });
          await tx.users.createUser({ aor: 'kept@example.com', home: 'pool1' });
        });
        expect((await store.users.getUser('kept@example.com'))?.home).toBe('pool1');
      });

      it('reuses the outer transaction when nested', async () => {
        await expect(
          db.transaction(async (tx) => {
            await tx.transaction(async (inner) => {
              await inner.query("INSERT INTO homes (name, kind, address) VALUES ('n', 'pool', 'sip:n')");
            });
            throw new Error('outer fails');
          }),
        ).rejects.toThrow('outer fails');
        expect((await db.query("SELECT 1 FROM homes WHERE name = 'n'")).rows).toHaveLength(0);
      });

      it('keeps concurrent statements out of an open transaction', async () => {
        let release!: () => void;
        const hold = new Promise<void>((r) => {
          release = r;
        });
        let entered!: () => void;
        const inside = new Promise<void>((r) => {
          entered = r;
        });
        const tx = db
          .transaction(async (t) => {
            await t.query("INSERT INTO homes (name, kind, address) VALUES ('iso', 'pool', 'sip:iso')");
            entered();
            await hold;
            throw new Error('rollback');
          })
          .catch(() => 'rolled back');
        await inside;
        const outside = db.query("SELECT count(*)::int AS n FROM homes WHERE name = 'iso'");
        release();
        expect(await tx).toBe('rolled back');
        expect((await outside).rows[0]).toEqual({ n: 0 });
      });

      it('reports affected rows', async () => {
        await db.query(
          "INSERT INTO homes (name, kind, address) VALUES ('a', 'pool', 'x'), ('b', 'pool', 'y')",
        );
        const res = await db.query("UPDATE homes SET address = 'z'");
        expect(res.affectedRows).toBe(2);
        const sel = await db.query('SELECT * FROM homes');
        expect(sel.affectedRows).toBe(0);
        expect(sel.rows).toHaveLength(2);
      });
    });

    describe('change feed', () => {
      it('delivers notifications to listeners until they stop', async () => {
        const got: string[] = [];
        const stop = await db.listen('Parley_Test', (p) => got.push(p));
        await db.notify('Parley_Test', 'one');
        await expect.poll(() => got).toEqual(['one']);
        await stop();
        await db.notify('Parley_Test', 'two');
        await db.query('SELECT 1');
        expect(got).toEqual(['one']);
      });

      it('delivers a notification sent inside a transaction only on commit', async () => {
        const got: string[] = [];
        const stop = await db.listen('parley_tx', (p) => got.push(p));
        await db
          .transaction(async (tx) => {
            await tx.query("SELECT pg_notify('parley_tx', 'lost')");
            throw new Error('rollback');
          })
          .catch(() => {});
        await db.transaction(async (tx) => {
          await tx.query("SELECT pg_notify('parley_tx', 'kept')");
        });
        await expect.poll(() => got).toEqual(['kept']);
        await stop();
      });

      it('announces user changes on the users channel', async () => {
        const got: string[] = [];
        const stop = await db.listen(USERS_CHANNEL, (p) => got.push(p));
        await store.users.createUser({ aor: 'Feed@Example.com' });
        await store.users.setEnabled('feed@example.com', false);
        await expect.poll(() => got).toEqual(['feed@example.com', 'feed@example.com']);
        await stop();
      });
    });

    describe('users', () => {
      it('creates, reads and normalizes', async () => {
        await store.homes.upsertHome({ name: 'std1', kind: 'standard', address: 'sip:std1.example.com' });
        const alice = await store.users.createUser({
          aor: 'sip:Alice@Example.com',
          displayName: 'Alice',
          home: 'std1',
          source: 'ldap:corp',
          sourceAnchor: 'guid-1',
        });
        expect(alice).toMatchObject({
          aor: 'alice@example.com',
          displayName: 'Alice',
          enabled: true,
          home: 'std1',
          source: 'ldap:corp',
          sourceAnchor: 'guid-1',
        });
        expect(typeof alice.id).toBe('number');
        expect(alice.createdAt).toBeInstanceOf(Date);
        expect(await store.users.getUser('ALICE@example.com')).toEqual(alice);
        expect(await store.users.getUserById(alice.id)).toEqual(alice);
        expect(await store.users.getUserBySourceAnchor('ldap:corp', 'guid-1')).toEqual(alice);
        expect(await store.users.getUser('nobody@example.com')).toBeUndefined();
        expect(await store.users.getUserById(alice.id + 1000)).toBeUndefined();
      });

      it('refuses a duplicate aor', async () => {
        await store.users.createUser({ aor: 'dup@example.com' });
        await expect(store.users.createUser({ aor: 'DUP@example.com' })).rejects.toBeInstanceOf(
          UserExistsError,
        );
      });

      it('updates enabled, display name and home', async () => {
        await store.homes.upsertHome({ name: 'p1', kind: 'pool', address: 'sip:p1' });
        await store.users.createUser({ aor: 'bob@example.com' });
        expect(await store.users.setEnabled('bob@example.com', false)).toBe(true);
        expect(await store.users.setDisplayName('bob@example.com', 'Bob B')).toBe(true);
        expect(await store.users.setHome('bob@example.com', 'p1')).toBe(true);
        expect(await store.users.getUser('bob@example.com')).toMatchObject({
          enabled: false,
          displayName: 'Bob B',
          home: 'p1',
        });
        expect(await store.users.setEnabled('ghost@example.com', true)).toBe(false);
        expect(await store.users.setHome('bob@example.com', null)).toBe(true);
        expect((await store.users.getUser('bob@example.com'))?.home).toBeNull();
      });

      it('lists with filters, offset and keyset paging, and counts', async () => {
        await store.homes.upsertHome({ name: 'p1', kind: 'pool', address: 'sip:p1' });
        await store.homes.upsertHome({ name: 'p2', kind: 'pool', address: 'sip:p2' });
        for (let i = 0; i < 7; i++) {
          await store.users.createUser({
            aor: `u${i}@example.com`,
            home: i < 4 ? 'p1' : 'p2',
            enabled: i % 2 === 0,
          });
        }
        const first = await store.users.listUsers({ limit: 3 });
        expect(first.users.map((u) => u.aor)).toEqual(['u0@example.com', 'u1@example.com', 'u2@example.com']);
        expect(first.nextCursor).toBe('u2@example.com');
        const second = await store.users.listUsers({ limit: 3, after: first.nextCursor });
        expect(second.users.map((u) => u.aor)).toEqual([
          'u3@example.com',
          'u4@example.com',
          'u5@example.com',
        ]);
        const last = await store.users.listUsers({ limit: 3, after: second.nextCursor });
        expect(last.users.map((u) => u.aor)).toEqual(['u6@example.com']);
        expect(last.nextCursor).toBeUndefined();
        const byOffset = await store.users.listUsers({ limit: 2, offset: 5 });
        expect(byOffset.users.map((u) => u.aor)).toEqual(['u5@example.com', 'u6@example.com']);
        const p1Enabled = await store.users.listUsers({ home: 'p1', enabled: true });
        expect(p1Enabled.users.map((u) => u.aor)).toEqual(['u0@example.com', 'u2@example.com']);
        const all: string[] = [];
        for await (const u of store.users.iterateUsers({ home: 'p2', limit: 2 })) all.push(u.aor);
        expect(all).toEqual(['u4@example.com', 'u5@example.com', 'u6@example.com']);
        expect(await store.users.countUsers()).toBe(7);
        expect(await store.users.countUsers({ home: 'p2' })).toBe(3);
        expect(await store.users.countUsers({ enabled: false })).toBe(3);
        expect(await store.users.countUsers({ home: 'p1', enabled: false })).toBe(2);
      });

      it('stores credentials per realm and reads them in one lookup', async () => {
        const carol = await store.users.createUser({ aor: 'carol@example.com' });
        await store.users.setCredentials(carol.id, 'example.com', {
          ha1Md5: 'a'.repeat(32),
          ha1Sha256: 'b'.repeat(64),
        });
        expect(await store.users.getCredentials('carol@example.com', 'example.com')).toEqual({
          userId: carol.id,
          aor: 'carol@example.com',
          enabled: true,
          ha1Md5: 'a'.repeat(32),
          ha1Sha256: 'b'.repeat(64),
        });
        await store.users.setCredentials(carol.id, 'example.com', {
          ha1Md5: 'c'.repeat(32),
          ha1Sha256: 'd'.repeat(64),
        });
        await store.users.setEnabled('carol@example.com', false);
        expect(await store.users.getCredentials('carol@example.com', 'example.com')).toMatchObject({
          enabled: false,
          ha1Md5: 'c'.repeat(32),
        });
        expect(await store.users.getCredentials('carol@example.com', 'other.com')).toBeUndefined();
        expect(await store.users.getCredentials('nobody@example.com', 'example.com')).toBeUndefined();
        expect((await store.users.listCredentials('example.com')).map((c) => c.aor)).toEqual([
          'carol@example.com',
        ]);
        expect(
          await store.users.withCredentials(['Carol@example.com', 'x@example.com'], 'example.com'),
        ).toEqual(new Set(['carol@example.com']));
        expect(await store.users.withCredentials([], 'example.com')).toEqual(new Set());
        expect(await store.users.removeCredentials(carol.id)).toBe(1);
        expect(await store.users.getCredentials('carol@example.com', 'example.com')).toBeUndefined();
      });

      it('removes a user with its credentials and registrations', async () => {
        const dave = await store.users.createUser({ aor: 'dave@example.com' });
        await store.users.setCredentials(dave.id, 'example.com', {
          ha1Md5: 'a'.repeat(32),
          ha1Sha256: 'b'.repeat(64),
        });
        await store.registrations.upsertBinding(binding('dave@example.com', 'sip:dave@10.0.0.1', 3600));
        expect(await store.users.removeUser('dave@example.com')).toBe(true);
        expect(await store.users.removeUser('dave@example.com')).toBe(false);
        expect(await store.users.getCredentials('dave@example.com', 'example.com')).toBeUndefined();
        expect(await store.registrations.listBindings('dave@example.com', T0)).toEqual([]);
        expect((await db.query('SELECT 1 FROM credentials')).rows).toHaveLength(0);
      });
    });

    describe('homes and placement', () => {
      it('upserts and lists homes, places users', async () => {
        await store.homes.upsertHome({ name: 'legacy', kind: 'standard', address: 'sip:old.example.com' });
        const pool = await store.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:a' });
        expect(pool).toMatchObject({ name: 'pool1', kind: 'pool', address: 'sip:a' });
        await store.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1.example.com' });
        expect((await store.homes.listHomes()).map((h) => [h.name, h.address])).toEqual([
          ['legacy', 'sip:old.example.com'],
          ['pool1', 'sip:pool1.example.com'],
        ]);
        expect(await store.homes.getHome('pool1')).toMatchObject({ kind: 'pool' });
        expect(await store.homes.getHome('none')).toBeUndefined();
        await store.users.createUser({ aor: 'erin@example.com', home: 'legacy' });
        await store.users.createUser({ aor: 'frank@example.com' });
        expect((await store.homes.getPlacement('erin@example.com'))?.name).toBe('legacy');
        expect(await store.homes.getPlacement('frank@example.com')).toBeUndefined();
        expect(await store.homes.setPlacement('erin@example.com', 'pool1')).toBe(true);
        expect((await store.homes.getPlacement('Erin@Example.com'))?.address).toBe('sip:pool1.example.com');
        expect(await store.homes.setPlacement('ghost@example.com', 'pool1')).toBe(false);
        await expect(store.homes.setPlacement('erin@example.com', 'nowhere')).rejects.toThrow();
        expect(await store.homes.countUsersByHome()).toEqual([
          { home: null, users: 1 },
          { home: 'pool1', users: 1 },
        ]);
        await expect(store.homes.removeHome('pool1')).rejects.toThrow();
        expect(await store.homes.removeHome('legacy')).toBe(true);
      });
    });

    describe('registrations', () => {
      it('upserts, lists unexpired by q, and removes', async () => {
        await store.registrations.upsertBinding(binding('a@x', 'sip:a@1', 100, { q: 0.5 }));
        await store.registrations.upsertBinding(
          binding('a@x', 'sip:a@2', 200, {
            q: 0.9,
            instanceId: '<urn:uuid:1>',
            userAgent: 'UA',
            path: '<sip:e;lr>',
          }),
        );
        await store.registrations.upsertBinding(binding('a@x', 'sip:a@3', -1));
        const list = await store.registrations.listBindings('a@x', T0);
        expect(list.map((b) => b.contact)).toEqual(['sip:a@2', 'sip:a@1']);
        expect(list[0]).toEqual({
          aor: 'a@x',
          contact: 'sip:a@2',
          instanceId: '<urn:uuid:1>',
          callId: 'call-sip:a@2',
          cseq: 1,
          expiresAt: at(200),
          q: 0.9,
          userAgent: 'UA',
          serverId: 'fe1',
          flowId: 'flow-sip:a@2',
          path: '<sip:e;lr>',
        });
        await store.registrations.upsertBinding(binding('a@x', 'sip:a@1', 300, { cseq: 2, q: 1 }));
        expect((await store.registrations.listBindings('a@x', T0))[0]).toMatchObject({
          contact: 'sip:a@1',
          cseq: 2,
        });
        expect(await store.registrations.removeBinding('a@x', 'sip:a@1')).toBe(true);
        expect(await store.registrations.removeBinding('a@x', 'sip:a@1')).toBe(false);
        expect(await store.registrations.removeAllForAor('a@x')).toBe(2);
      });

      it('writes a batch in one statement, last entry winning', async () => {
        const batch: NewBinding[] = [];
        for (let i = 0; i < 250; i++) batch.push(binding(`u${i % 50}@x`, `sip:c${i}`, 60 + i));
        batch.push(binding('u0@x', 'sip:c0', 999, { cseq: 7 }));
        expect(await store.registrations.upsertBindings(batch)).toBe(250);
        expect(await store.registrations.upsertBindings([])).toBe(0);
        expect(await store.registrations.countActive(T0)).toEqual({ bindings: 250, aors: 50 });
        const u0 = await store.registrations.listBindings('u0@x', T0);
        expect(u0.find((b) => b.contact === 'sip:c0')).toMatchObject({ cseq: 7, expiresAt: at(999) });
      });

      it('expires, and removes by server', async () => {
        await store.registrations.upsertBindings([
          binding('a@x', 'sip:1', 10),
          binding('a@x', 'sip:2', 100, { serverId: 'fe2' }),
          binding('b@x', 'sip:3', 100),
        ]);
        expect(await store.registrations.countActive(at(50))).toEqual({ bindings: 2, aors: 2 });
        expect(await store.registrations.removeExpired(at(50))).toBe(1);
        expect((await store.registrations.listForServer('fe1', T0)).map((b) => b.contact)).toEqual(['sip:3']);
        expect(await store.registrations.removeForServer('fe1')).toBe(1);
        expect((await store.registrations.listBindings('a@x', T0)).map((b) => b.serverId)).toEqual(['fe2']);
      });
    });

    describe('publications', () => {
      const pub = (etag: string, aor: string, expiresIn: number, serverId = 'fe1') => ({
        aor,
        etag,
        contentType: 'application/pidf+xml',
        body: `<presence entity="sip:${aor}"/>`,
        expiresAt: at(expiresIn),
        serverId,
      });

      it('upserts, replaces entity tags, lists and removes', async () => {
        await store.publications.upsert(pub('e1', 'a@x', 100));
        await store.publications.upsert(pub('e2', 'a@x', 100));
        expect(await store.publications.get('e1', T0)).toEqual(pub('e1', 'a@x', 100));
        expect(await store.publications.get('e1', at(200))).toBeUndefined();
        expect(
          await store.publications.replace('e1', { etag: 'e3', expiresAt: at(500), body: '<new/>' }, T0),
        ).toBe(true);
        expect(await store.publications.replace('e1', { etag: 'e4', expiresAt: at(500) }, T0)).toBe(false);
        expect(await store.publications.get('e3', T0)).toMatchObject({ body: '<new/>', expiresAt: at(500) });
        expect(await store.publications.replace('e3', { etag: 'e5', expiresAt: at(600) }, T0)).toBe(true);
        expect(await store.publications.get('e5', T0)).toMatchObject({ body: '<new/>' });
        expect(await store.publications.replace('e2', { etag: 'e6', expiresAt: at(600) }, at(150))).toBe(
          false,
        );
        expect((await store.publications.listForAor('a@x', T0)).map((p) => p.etag).sort()).toEqual([
          'e2',
          'e5',
        ]);
        expect(await store.publications.remove('e5')).toBe(true);
        expect(await store.publications.remove('e5')).toBe(false);
      });

      it('expires and removes by server, reporting affected AORs', async () => {
        await store.publications.upsert(pub('e1', 'a@x', 10));
        await store.publications.upsert(pub('e2', 'a@x', 20));
        await store.publications.upsert(pub('e3', 'b@x', 100, 'fe2'));
        await store.publications.upsert(pub('e4', 'c@x', 100));
        expect(await store.publications.removeExpired(at(50))).toEqual(['a@x']);
        expect(await store.publications.removeForServer('fe2')).toEqual(['b@x']);
        expect((await store.publications.listForAor('c@x', T0)).map((p) => p.etag)).toEqual(['e4']);
      });
    });

    describe('subscriptions', () => {
      it('stores dialog state and finds watchers', async () => {
        await store.subscriptions.upsert(subscription('s1'));
        await store.subscriptions.upsert(
          subscription('s2', { watcher: 'carol@example.com', serverId: 'fe2' }),
        );
        await store.subscriptions.upsert(subscription('s3', { event: 'presence.winfo' }));
        expect(await store.subscriptions.get('s1')).toEqual(subscription('s1'));
        expect(await store.subscriptions.get('nope')).toBeUndefined();
        const watchers = await store.subscriptions.listForPresentity('alice@example.com', 'presence', T0);
        expect(watchers.map((s) => s.id)).toEqual(['s1', 's2']);
        expect((await store.subscriptions.listForWatcher('carol@example.com', T0)).map((s) => s.id)).toEqual([
          's2',
        ]);
        expect((await store.subscriptions.listForServer('fe2', T0)).map((s) => s.id)).toEqual(['s2']);
        expect(await store.subscriptions.nextLocalCseq('s1')).toBe(1);
        expect(await store.subscriptions.nextLocalCseq('s1')).toBe(2);
        expect(await store.subscriptions.nextLocalCseq('nope')).toBeUndefined();
        expect(await store.subscriptions.refresh('s1', at(7200), 'pending')).toBe(true);
        expect(await store.subscriptions.get('s1')).toMatchObject({
          expiresAt: at(7200),
          status: 'pending',
          localCseq: 2,
        });
        expect(await store.subscriptions.moveFlow('s1', 'fe3', 'flow-9')).toBe(true);
        expect(await store.subscriptions.get('s1')).toMatchObject({ serverId: 'fe3', flowId: 'flow-9' });
        expect(await store.subscriptions.countActive(T0)).toBe(3);
        expect(await store.subscriptions.remove('s3')).toBe(true);
        expect(await store.subscriptions.remove('s3')).toBe(false);
      });

      it('expires and removes by server', async () => {
        await store.subscriptions.upsert(subscription('s1', { expiresAt: at(10), routeSet: [] }));
        await store.subscriptions.upsert(subscription('s2', { serverId: 'fe2' }));
        await store.subscriptions.upsert(subscription('s3'));
        const expired = await store.subscriptions.removeExpired(at(50));
        expect(expired.map((s) => s.id)).toEqual(['s1']);
        expect(expired[0].routeSet).toEqual([]);
        expect(await store.subscriptions.removeForServer('fe2')).toBe(1);
        expect(await store.subscriptions.countActive(at(50))).toBe(1);
      });
    });

    describe('servers', () => {
      it('registers, heartbeats, lists and marks down', async () => {
        const fe1 = await store.servers.register({
          id: 'fe1',
          role: 'frontend',
          home: 'pool1',
          address: '10.0.0.1:5060',
        });
        expect(fe1).toMatchObject({
          id: 'fe1',
          role: 'frontend',
          home: 'pool1',
          state: 'up',
          healthUrl: null,
        });
        await store.servers.register({
          id: 'dir1',
          role: 'director',
          address: '10.0.0.9:5060',
          healthUrl: 'http://d/health',
        });
        expect(await store.servers.heartbeat('fe1')).toBe(true);
        expect(await store.servers.heartbeat('ghost')).toBe(false);
        expect((await store.servers.list()).map((s) => s.id)).toEqual(['dir1', 'fe1']);
        expect((await store.servers.list({ role: 'frontend', home: 'pool1' })).map((s) => s.id)).toEqual([
          'fe1',
        ]);
        expect(await store.servers.markDown('fe1')).toBe(true);
        expect(await store.servers.heartbeat('fe1')).toBe(false);
        expect((await store.servers.list({ state: 'up' })).map((s) => s.id)).toEqual(['dir1']);
        expect((await store.servers.register({ id: 'fe1', role: 'frontend', address: 'x' })).state).toBe(
          'up',
        );
        await db.query("UPDATE servers SET heartbeat_at = now() - interval '10 minutes' WHERE id = 'dir1'");
        expect(await store.servers.markStaleDown(new Date(Date.now() - 60_000))).toEqual(['dir1']);
        expect((await store.servers.get('dir1'))?.state).toBe('down');
        expect(await store.servers.remove('dir1')).toBe(true);
        expect(await store.servers.get('dir1')).toBeUndefined();
      });
    });
    describe('federation', () => {
      beforeEach(async () => {
        await db.exec('TRUNCATE federation_partners');
      });

      it('keeps one entry per domain: allow and block replace each other', async () => {
        const first = await store.federation.put({
          domain: 'partner.example',
          action: 'allow',
          note: 'ticket 1',
        });
        expect(first.previous).toBeUndefined();
        expect(first.entry).toMatchObject({ domain: 'partner.example', action: 'allow', note: 'ticket 1' });
        await store.federation.put({
          domain: 'partner.example',
          action: 'allow',
          edgeFqdn: 'sip.partner.example',
        });
        expect((await store.federation.get('partner.example'))?.edgeFqdn).toBe('sip.partner.example');
        const blocked = await store.federation.put({ domain: 'partner.example', action: 'block' });
        expect(blocked.previous?.action).toBe('allow');
        expect(blocked.entry.edgeFqdn).toBeUndefined();
        expect((await store.federation.list('allow')).length).toBe(0);
        expect((await store.federation.list('block')).map((e) => e.domain)).toEqual(['partner.example']);
        expect(await store.federation.remove('partner.example', 'allow')).toBe(false);
        expect(await store.federation.remove('partner.example', 'block')).toBe(true);
        expect(await store.federation.list()).toEqual([]);
      });

      it('has one clearinghouse, never also a partner', async () => {
        expect(await store.federation.setClearinghouse('ch1.example')).toEqual({});
        expect(await store.federation.setClearinghouse('ch2.example')).toEqual({ previous: 'ch1.example' });
        expect((await store.federation.list('clearinghouse')).map((e) => e.domain)).toEqual(['ch2.example']);
        await expect(store.federation.put({ domain: 'ch2.example', action: 'allow' })).rejects.toThrow(
          /clearinghouse/,
        );
        await store.federation.put({ domain: 'partner.example', action: 'allow' });
        await expect(store.federation.setClearinghouse('partner.example')).rejects.toThrow(/allow list/);
        expect(await store.federation.clearClearinghouse()).toBe('ch2.example');
        expect(await store.federation.clearClearinghouse()).toBeUndefined();
      });

      it('announces every change on the federation channel', async () => {
        const got: string[] = [];
        const stop = await db.listen(FEDERATION_CHANNEL, (p) => got.push(p));
        await store.federation.put({ domain: 'a.example', action: 'allow' });
        await store.federation.put({ domain: 'b.example', action: 'block' });
        await store.federation.remove('a.example', 'allow');
        await store.federation.remove('a.example', 'allow');
        await store.federation.setClearinghouse('ch.example');
        await store.federation.clearClearinghouse();
        await expect
          .poll(() => got)
          .toEqual(['a.example', 'b.example', 'a.example', 'ch.example', 'ch.example']);
        await stop();
      });
    });

    describe('directory: replicated users and the sync journal', () => {
      beforeEach(async () => {
        await db.exec(
          'TRUNCATE directory_sync_ops, directory_sync_runs, directory_watermarks, directory_joins, directory_sync_lock CASCADE',
        );
      });

      const dirUser = (aor: string, extra: Partial<DirectoryUser> = {}): DirectoryUser => ({
        aor,
        displayName: aor.split('@')[0],
        enabled: true,
        home: null,
        source: 'ldap:central',
        sourceAnchor: `anchor-${aor}`,
        ...extra,
      });

      it('upserts directory users in batches, leaves local users alone and announces each write', async () => {
        await store.users.createUser({ aor: 'local@example.com', displayName: 'Local' });
        const got: string[] = [];
        const stop = await db.listen(USERS_CHANNEL, (p) => got.push(p));
        const many = Array.from({ length: 1201 }, (_, i) =>
          dirUser(`d${String(i).padStart(4, '0')}@example.com`),
        );
        const written = await store.users.upsertDirectoryUsers([
          ...many,
          dirUser('LOCAL@example.com', { displayName: 'Taken over?' }),
        ]);
        expect(written).toHaveLength(1201);
        expect(written).not.toContain('local@example.com');
        await expect.poll(() => got.length).toBe(1201);
        expect(new Set(got)).toEqual(new Set(many.map((u) => u.aor)));
        expect(await store.users.getUser('local@example.com')).toMatchObject({
          displayName: 'Local',
          source: 'local',
        });

        got.length = 0;
        const changed = await store.users.upsertDirectoryUsers([
          dirUser('d0000@example.com', { displayName: 'Renamed', home: null, source: 'ldap:north' }),
        ]);
        expect(changed).toEqual(['d0000@example.com']);
        await expect.poll(() => got).toEqual(['d0000@example.com']);
        const states = await store.users.listDirectoryStates();
        expect(states).toHaveLength(1202);
        expect(states.find((u) => u.aor === 'd0000@example.com')).toEqual(
          dirUser('d0000@example.com', { displayName: 'Renamed', source: 'ldap:north' }),
        );
        expect(await store.users.upsertDirectoryUsers([])).toEqual([]);
        await stop();
      });

      it('disables and deletes directory users only, with their registrations, announcing each', async () => {
        await store.users.createUser({ aor: 'local@example.com' });
        await store.users.upsertDirectoryUsers([
          dirUser('gone@example.com'),
          dirUser('off@example.com'),
          dirUser('already@example.com', { enabled: false }),
        ]);
        await store.registrations.upsertBinding(binding('gone@example.com', 'sip:gone@10.0.0.1', 3600));
        await store.registrations.upsertBinding(binding('local@example.com', 'sip:local@10.0.0.2', 3600));
        const got: string[] = [];
        const stop = await db.listen(USERS_CHANNEL, (p) => got.push(p));

        expect(
          await store.users.disableDirectoryUsers([
            'off@example.com',
            'already@example.com',
            'local@example.com',
          ]),
        ).toEqual(['off@example.com']);
        expect((await store.users.getUser('off@example.com'))?.enabled).toBe(false);
        expect((await store.users.getUser('local@example.com'))?.enabled).toBe(true);

        expect(await store.users.removeDirectoryUsers(['GONE@example.com', 'local@example.com'])).toEqual([
          'gone@example.com',
        ]);
        expect(await store.users.getUser('gone@example.com')).toBeUndefined();
        expect(await store.registrations.listBindings('gone@example.com', T0)).toEqual([]);
        expect(await store.users.getUser('local@example.com')).toBeDefined();
        expect(await store.registrations.listBindings('local@example.com', T0)).toHaveLength(1);
        await expect.poll(() => got).toEqual(['off@example.com', 'gone@example.com']);

        expect(await store.users.disableDirectoryUsers([])).toEqual([]);
        expect(await store.users.removeDirectoryUsers([])).toEqual([]);
        await stop();
      });

      it('lets one holder have the sync lock, hands over a dead holder, releases', async () => {
        const j = store.directoryJournal;
        expect(await j.acquireLock('host:1', 120)).toEqual({ acquired: true });
        const refused = await j.acquireLock('host:2', 120);
        expect(refused).toMatchObject({ acquired: false, heldBy: { holder: 'host:1' } });
        await j.heartbeat('host:1', 42);
        expect(await j.acquireLock('host:2', 120)).toMatchObject({ heldBy: { holder: 'host:1', runId: 42 } });
        expect(await j.acquireLock('host:2', 120, (h) => h === 'host:1')).toEqual({ acquired: true });
        await j.releaseLock('host:1');
        expect(await j.acquireLock('host:3', 120)).toMatchObject({ heldBy: { holder: 'host:2' } });
        await j.releaseLock('host:2');
        expect(await j.acquireLock('host:3', 120)).toEqual({ acquired: true });
      });

      it('journals runs and their operations; a run left running is interrupted by the next', async () => {
        const j = store.directoryJournal;
        const first = await j.startRun({ mode: 'full', dryRun: false, holder: 'host:1' });
        expect(first.resumedFrom).toBeUndefined();
        expect(await j.lastOpSeq(first.runId)).toBe(0);
        await j.recordOps(
          first.runId,
          [1, 2, 3].map((seq) => ({
            seq,
            forest: 'north',
            anchor: `a${seq}`,
            action: 'add' as const,
            contactDn: `cn=${seq}`,
          })),
        );
        await j.markOps(first.runId, [1], 'done');
        await j.markOps(first.runId, [2], 'failed', 'no such object');
        expect(await j.opCounts(first.runId)).toEqual({ done: 1, failed: 1, pending: 1 });
        expect(await j.lastOpSeq(first.runId)).toBe(3);

        const second = await j.startRun({ mode: 'incremental', dryRun: false, holder: 'host:2' });
        expect(second).toMatchObject({ resumedFrom: first.runId, pendingOps: 1 });
        expect(await j.runStatus(first.runId)).toBe('interrupted');
        expect(await j.lastRun()).toEqual({ id: second.runId, status: 'running' });
        await j.finishRun(second.runId, 'succeeded', { added: 0 });
        expect(await j.runStatus(second.runId)).toBe('succeeded');
        expect(await j.runStatus(second.runId + 1000)).toBeUndefined();
      });

      it('keeps watermarks and joins', async () => {
        const j = store.directoryJournal;
        expect(await j.watermark('north')).toBeUndefined();
        await j.setWatermark('north', '20300101000000Z');
        await j.setWatermark('north', '20300102000000Z');
        expect(await j.watermark('north')).toBe('20300102000000Z');

        const join = (anchor: string, extra: Partial<Join> = {}): Join => ({
          forest: 'north',
          anchor,
          sourceDn: `uid=${anchor},ou=people`,
          contactDn: `cn=north-${anchor},ou=contacts`,
          sipAddress: `${anchor}@example.com`,
          state: 'active',
          attributes: { displayName: [anchor], parleyEnabled: ['TRUE'] },
          attributesHash: `h-${anchor}`,
          ...extra,
        });
        await j.saveJoins([
          join('a'),
          join('b', { state: 'disabled', disabledAt: at(10), disabledReason: 'source-gone' }),
          join('c', { state: 'conflict', sipAddress: 'a@example.com' }),
        ]);
        await j.saveJoins([join('a', { sourceDn: 'uid=a,ou=moved' })]);
        const joins = await j.joins('north');
        expect([...joins.keys()].sort()).toEqual(['a', 'b', 'c']);
        expect(joins.get('a')).toEqual(join('a', { sourceDn: 'uid=a,ou=moved' }));
        expect(joins.get('b')).toEqual(
          join('b', { state: 'disabled', disabledAt: at(10), disabledReason: 'source-gone' }),
        );
        expect((await j.joinsForAddress('a@example.com')).map((x) => x.anchor)).toEqual(['a', 'c']);
        const claims = await j.claims();
        expect(claims.get('a@example.com')).toEqual({
          forest: 'north',
          anchor: 'a',
          sourceDn: 'uid=a,ou=moved',
        });
        expect([...claims.keys()].sort()).toEqual(['a@example.com', 'b@example.com']);
        await j.deleteJoins('north', ['a', 'c']);
        await j.deleteJoins('north', []);
        expect([...(await j.joins('north')).keys()]).toEqual(['b']);
        expect((await j.joins('south')).size).toBe(0);
      });
    });
  });
}
