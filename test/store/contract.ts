import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CLIENT_POLICIES_CHANNEL } from '../../src/store/clients.js';
import {
  CONTACT_LISTS_CHANNEL,
  type ContactList,
  type ContactListDecision,
} from '../../src/store/contact-lists.js';
import type { Join } from '../../src/store/directory-journal.js';
import { FEDERATION_CHANNEL } from '../../src/store/federation.js';
import { GROUPS_CHANNEL } from '../../src/store/groups.js';
import { PLACEMENT_CHANNEL } from '../../src/store/homes.js';
import { appliedMigrations, currentVersion, loadMigrations, migrate } from '../../src/store/migrate.js';
import { PRESENCE_CHANNEL, type Publication } from '../../src/store/publications.js';
import {
  type NewBinding,
  REGISTRATIONS_CHANNEL,
  registrationPayloadAors,
  registrationPayloads,
} from '../../src/store/registrations.js';
import { seedContactLists } from '../../src/store/seed.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { type DirectoryUser, USERS_CHANNEL, UserExistsError } from '../../src/store/users.js';
import { queryNumber } from '../support/database.js';

export interface EngineFactory {
  /** A fresh, empty (not migrated) database. */
  create(): Promise<Database>;
  /** Releases what the factory started (servers, folders). */
  teardown?(): Promise<void>;
}

const TABLES = [
  'users',
  // No foreign key to users (011_contacts_owned_by_store.sql): TRUNCATE users does not reach it.
  'contacts',
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

/**
 * Collects a channel's payloads. `settled()` sends a marker through the same feed and waits
 * for it, so everything notified before it has arrived: what is missing then was not sent.
 */
async function recordChannel(db: Database, channel: string) {
  const got: string[] = [];
  const stop = await db.listen(channel, (p) => got.push(p));
  let marks = 0;
  return {
    got,
    stop,
    async settled(): Promise<string[]> {
      const mark = `--mark-${++marks}--`;
      await db.notify(channel, mark);
      await expect.poll(() => got.includes(mark), { interval: 5 }).toBe(true);
      return got.splice(0).filter((p) => !p.startsWith('--mark-'));
    },
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
        // Only the row of the server asking: the endpoint may have moved to another front-end.
        expect(await store.registrations.removeBinding('a@x', 'sip:a@1', 'fe2')).toBe(false);
        expect(await store.registrations.removeBinding('a@x', 'sip:a@1', 'fe1')).toBe(true);
        expect(await store.registrations.removeBinding('a@x', 'sip:a@1', 'fe1')).toBe(false);
        expect(await store.registrations.removeAllForAor('a@x')).toBe(2);
      });

      it('removes many bindings in one statement, only the rows of the server asking', async () => {
        const batch: NewBinding[] = [];
        for (let i = 0; i < 100; i++) batch.push(binding(`u${i}@x`, `sip:c${i}`, 60));
        batch.push(binding('moved@x', 'sip:m', 60, { serverId: 'fe2' }));
        await store.registrations.upsertBindings(batch);
        const keys = batch.map((b) => ({ aor: b.aor, contact: b.contact }));
        expect(await store.registrations.removeBindings(keys, 'fe1')).toBe(100);
        expect(await store.registrations.listBindings('u7@x', T0)).toEqual([]);
        expect(await store.registrations.listBindings('moved@x', T0)).toHaveLength(1);
        expect(await store.registrations.removeBindings([], 'fe1')).toBe(0);
      });

      it('tells which of many AORs are signed in through another server, in one statement', async () => {
        await store.registrations.upsertBindings([
          binding('here@x', 'sip:h', 60),
          binding('both@x', 'sip:b1', 60),
          binding('both@x', 'sip:b2', 60, { serverId: 'fe2' }),
          binding('there@x', 'sip:t', 60, { serverId: 'fe2' }),
          binding('expired@x', 'sip:e', 10, { serverId: 'fe2' }),
        ]);
        const asked = ['here@x', 'both@x', 'there@x', 'expired@x', 'nobody@x'];
        expect((await store.registrations.signedInElsewhere(asked, 'fe1', at(50))).sort()).toEqual([
          'both@x',
          'there@x',
        ]);
        expect(await store.registrations.signedInElsewhere([], 'fe1')).toEqual([]);
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

      it('announces the AORs of every write on the registrations channel, once committed', async () => {
        const channel = await recordChannel(db, REGISTRATIONS_CHANNEL);
        const aors = (payloads: string[]) =>
          payloads.flatMap((p) => registrationPayloadAors(p) ?? ['*']).sort();
        try {
          await store.registrations.upsertBindings([
            binding('n1@x', 'sip:1', 100),
            binding('n2@x', 'sip:2', 100),
            binding('n1@x', 'sip:3', 100),
          ]);
          expect(aors(await channel.settled())).toEqual(['n1@x', 'n2@x']);
          expect(await store.registrations.removeBinding('n1@x', 'sip:1', 'fe2')).toBe(false);
          expect(await channel.settled()).toEqual([]);
          expect(await store.registrations.removeBinding('n1@x', 'sip:1', 'fe1')).toBe(true);
          expect(aors(await channel.settled())).toEqual(['n1@x']);
          expect(await store.registrations.removeAllForAor('n2@x')).toBe(1);
          expect(await store.registrations.removeAllForAor('n2@x')).toBe(0);
          expect(aors(await channel.settled())).toEqual(['n2@x']);
          // A server's bindings dropped at once: "any AOR".
          expect(await store.registrations.removeForServer('fe1')).toBe(1);
          expect(aors(await channel.settled())).toEqual(['*']);
          expect(await store.registrations.removeForServer('fe1')).toBe(0);
          expect(await channel.settled()).toEqual([]);
          // A rolled-back write announces nothing.
          await expect(
            store.transaction(async (tx) => {
              await tx.registrations.upsertBinding(binding('n3@x', 'sip:4', 100));
              throw new Error('rolled back');
            }),
          ).rejects.toThrow('rolled back');
          expect(await channel.settled()).toEqual([]);
          // A batch larger than one payload holds arrives whole, in several notifications.
          const many = Array.from({ length: 2_000 }, (_, i) =>
            binding(`bulk-user-${i}@example.com`, 'sip:b', 100),
          );
          await store.registrations.upsertBindings(many);
          const got = await channel.settled();
          expect(got.length).toBeGreaterThan(1);
          expect(aors(got)).toEqual(many.map((b) => b.aor).sort());
        } finally {
          await channel.stop();
        }
      });

      it('packs AORs into payloads PostgreSQL accepts', () => {
        const payloads = registrationPayloads(Array.from({ length: 1_000 }, (_, i) => `user${i}@é.example`));
        for (const p of payloads) expect(Buffer.byteLength(p)).toBeLessThan(8_000);
        expect(payloads.flatMap((p) => registrationPayloadAors(p) ?? [])).toHaveLength(1_000);
        expect(registrationPayloads([])).toEqual([]);
        expect(registrationPayloads(['a@x', 'a@x'])).toEqual(['a@x']);
      });
    });

    describe('publications', () => {
      // Expiry is judged by the database clock: times are relative to now.
      const inSeconds = (n: number) => new Date(Math.floor(Date.now() / 1000) * 1000 + n * 1000);
      const pub = (etag: string, aor: string, expiresIn: number, extra: Partial<Publication> = {}) => ({
        aor,
        etag,
        contentType: 'application/pidf+xml',
        body: `<presence entity="sip:${aor}"/>`,
        updatedAt: inSeconds(-60),
        expiresAt: inSeconds(expiresIn),
        serverId: 'fe1',
        ...extra,
      });

      it('saves, refreshes, lists unexpired states in change order, and removes', async () => {
        const feed = await recordChannel(db, PRESENCE_CHANNEL);
        try {
          // Built once: a second boundary passing between save and compare must not move its times.
          const e1 = pub('e1', 'a@x', 3600);
          await store.publications.save(e1);
          await store.publications.save(pub('e2', 'a@x', 3600, { updatedAt: inSeconds(-120) }));
          await store.publications.save(pub('e3', 'a@x', -5));
          expect(await store.publications.get('a@x', 'e1')).toEqual(e1);
          expect(await store.publications.get('b@x', 'e1')).toBeUndefined();
          expect(await store.publications.get('a@x', 'e3')).toBeUndefined();
          expect((await store.publications.listForAor('a@x')).map((p) => p.etag)).toEqual(['e2', 'e1']);
          const refreshed = pub('e2', 'a@x', 7200, {
            body: '<new/>',
            updatedAt: inSeconds(0),
            serverId: 'fe2',
          });
          await store.publications.save(refreshed);
          expect(await store.publications.listForAor('a@x')).toEqual([e1, refreshed]);
          expect(await feed.settled()).toEqual(['a@x', 'a@x', 'a@x', 'a@x']);

          // A refreshed state is not removed as expired; an expired one is, once.
          expect(await store.publications.remove('a@x', 'e1', true)).toBe(false);
          expect(await store.publications.remove('a@x', 'e3', true)).toBe(true);
          expect(await store.publications.remove('a@x', 'e3')).toBe(false);
          expect(await store.publications.remove('b@x', 'e1')).toBe(false);
          expect(await store.publications.remove('a@x', 'e1')).toBe(true);
          expect(await feed.settled()).toEqual(['a@x', 'a@x']);

          expect(await store.publications.removeAll('a@x')).toBe(1);
          expect(await store.publications.removeAll('a@x')).toBe(0);
          expect(await store.publications.listForAor('a@x')).toEqual([]);
          expect(await feed.settled()).toEqual(['a@x']);

          // Many users' states in one statement, each AOR announced.
          await store.publications.save(pub('e4', 'b@x', 3600));
          await store.publications.save(pub('e5', 'c@x', 3600));
          expect(await feed.settled()).toEqual(['b@x', 'c@x']);
          expect(await store.publications.removeAllOf(['b@x', 'c@x', 'a@x'])).toBe(2);
          expect(await store.publications.removeAllOf([])).toBe(0);
          expect((await feed.settled()).sort()).toEqual(['b@x', 'c@x']);
        } finally {
          await feed.stop();
        }
      });

      it("removes a dead server's states and announces each AOR once", async () => {
        await store.publications.save(pub('e1', 'b@x', 3600, { serverId: 'fe2' }));
        await store.publications.save(pub('e2', 'b@x', 3600, { serverId: 'fe2' }));
        await store.publications.save(pub('e3', 'a@x', 3600, { serverId: 'fe2' }));
        await store.publications.save(pub('e4', 'c@x', 3600));
        const feed = await recordChannel(db, PRESENCE_CHANNEL);
        try {
          expect(await store.publications.removeForServer('fe2')).toEqual(['a@x', 'b@x']);
          expect(await store.publications.removeForServer('fe2')).toEqual([]);
          expect((await feed.settled()).sort()).toEqual(['a@x', 'b@x']);
          expect((await store.publications.listForAor('c@x')).map((p) => p.etag)).toEqual(['e4']);
        } finally {
          await feed.stop();
        }
      });

      it('announces nothing when a save rolls back', async () => {
        const feed = await recordChannel(db, PRESENCE_CHANNEL);
        try {
          await expect(
            store.transaction(async (tx) => {
              await tx.publications.save(pub('e1', 'a@x', 3600));
              throw new Error('rollback');
            }),
          ).rejects.toThrow('rollback');
          expect(await feed.settled()).toEqual([]);
          expect(await store.publications.listForAor('a@x')).toEqual([]);
        } finally {
          await feed.stop();
        }
      });
    });

    describe('contact lists', () => {
      // Group names travel as array literals: quotes, backslashes, braces and commas must survive.
      const QUOTED = 'say "hi" a\\b {x,y} NULL';
      const list = (user: string, version: number, extra: Partial<ContactList> = {}): ContactList => ({
        user: `sip:${user}`,
        version,
        groups: [{ name: 'Team' }, { name: 'Friends' }, { name: QUOTED }],
        contacts: [
          { uri: 'sip:bob@example.com', displayName: 'Bob "B"', subscribed: true, groups: [QUOTED, 'Team'] },
          {
            uri: 'sip:carol@example.com',
            displayName: '',
            subscribed: false,
            groups: ['Friends', 'Undeclared', 'Team'],
          },
        ],
        accessRules: [
          { pattern: 'example.com', action: 'allow' },
          { pattern: '*', action: 'block' },
        ],
        ...extra,
      });
      /** Stores `next` as it is, whatever the stored list was; reports the list it replaced. */
      const put =
        (next: ContactList) =>
        (current: ContactList): ContactListDecision<ContactList> => ({
          next,
          contentChanged: JSON.stringify(current.contacts) !== JSON.stringify(next.contacts),
          report: current,
        });
      const newUsers = async (...aors: string[]) => {
        const ids: number[] = [];
        for (const aor of aors) ids.push((await store.users.createUser({ aor })).id);
        return ids;
      };

      it('reads an empty list at version 0, finds owners by aor', async () => {
        const [alice] = await newUsers('alice@example.com');
        expect(await store.contactLists.get(alice)).toEqual({
          user: 'sip:alice@example.com',
          version: 0,
          groups: [],
          contacts: [],
          accessRules: [],
        });
        await expect(store.contactLists.get(alice + 1000)).rejects.toThrow(/no user/);
        const owners = await store.contactLists.findOwners(['alice@example.com', 'nobody@example.com']);
        expect([...owners.values()]).toEqual([{ id: alice, aor: 'alice@example.com' }]);
        expect(await store.contactLists.findOwners([])).toEqual(new Map());
      });

      it('writes lists in one transaction, in stored form, and announces every new version', async () => {
        const [alice, bob] = await newUsers('alice@example.com', 'bob@example.com');
        const feed = await recordChannel(db, CONTACT_LISTS_CHANNEL);
        try {
          const previous = await store.contactLists.write([
            { userId: bob, decide: put(list('bob@example.com', 1)) },
            { userId: alice, decide: put(list('alice@example.com', 7)) },
          ]);
          expect(previous.map((l) => l.version)).toEqual([0, 0]);
          const stored = await store.contactLists.get(alice);
          expect(stored).toEqual({
            ...list('alice@example.com', 7),
            // Rules in pattern order, a contact's groups in list order and only the list's own.
            accessRules: [
              { pattern: '*', action: 'block' },
              { pattern: 'example.com', action: 'allow' },
            ],
            contacts: [
              { ...list('alice@example.com', 7).contacts[0], groups: ['Team', QUOTED] },
              { ...list('alice@example.com', 7).contacts[1], groups: ['Team', 'Friends'] },
            ],
          });
          const many = await store.contactLists.getMany([
            { id: alice, aor: 'alice@example.com' },
            { id: bob, aor: 'bob@example.com' },
          ]);
          expect(many.get(alice)).toEqual(stored);
          expect(many.get(bob)?.version).toBe(1);
          expect((await feed.settled()).sort()).toEqual(['alice@example.com', 'bob@example.com']);

          // Same version, same contents: nothing written, nothing announced.
          await store.contactLists.write([{ userId: alice, decide: put(stored) }]);
          // A new version without notification (imports can ask for that).
          await store.contactLists.write([{ userId: bob, decide: put(list('bob@example.com', 2)) }], {
            notify: false,
          });
          expect(await feed.settled()).toEqual([]);
          expect((await store.contactLists.get(bob)).version).toBe(2);

          // Emptying a list clears its rows.
          await store.contactLists.write([
            {
              userId: alice,
              decide: put(list('alice@example.com', 8, { groups: [], contacts: [], accessRules: [] })),
            },
          ]);
          expect(await store.contactLists.get(alice)).toEqual({
            user: 'sip:alice@example.com',
            version: 8,
            groups: [],
            contacts: [],
            accessRules: [],
          });
          expect(await feed.settled()).toEqual(['alice@example.com']);
        } finally {
          await feed.stop();
        }
      });

      it('hands each write its stored list whichever tables hold its rows, and knows an empty one by its version', async () => {
        const [rules, groups, contacts, none] = await newUsers(
          'rules@example.com',
          'groups@example.com',
          'contacts@example.com',
          'none@example.com',
        );
        const empty = { groups: [], contacts: [], accessRules: [] };
        const only: [number, ContactList][] = [
          [rules, list('rules@example.com', 3, { groups: [], contacts: [] })],
          [groups, list('groups@example.com', 4, { contacts: [], accessRules: [] })],
          [contacts, list('contacts@example.com', 5, { groups: [], accessRules: [] })],
          [none, list('none@example.com', 6, empty)],
        ];
        const set = (next: ContactList) => (): ContactListDecision<undefined> => ({
          next,
          contentChanged: true,
          report: undefined,
        });
        await store.contactLists.write(only.map(([userId, next]) => ({ userId, decide: set(next) })));
        const expected = await store.contactLists.getMany(
          only.map(([id, l]) => ({ id, aor: l.user.slice('sip:'.length) })),
        );
        const seen = await store.contactLists.write(
          only.map(([userId]) => ({ userId, decide: (current: ContactList) => put(current)(current) })),
        );
        expect(seen).toEqual(only.map(([id]) => expected.get(id)));
        expect(
          seen.map((l) => [l.version, l.groups.length, l.contacts.length, l.accessRules.length]),
        ).toEqual([
          [3, 0, 0, 2],
          [4, 3, 0, 0],
          [5, 0, 2, 0],
          [6, 0, 0, 0],
        ]);
      });

      it('writes all of a batch or none of it, and announces nothing that rolled back', async () => {
        const [alice] = await newUsers('alice@example.com');
        const feed = await recordChannel(db, CONTACT_LISTS_CHANNEL);
        try {
          await expect(
            store.contactLists.write([
              { userId: alice, decide: put(list('alice@example.com', 1)) },
              { userId: alice + 1000, decide: put(list('ghost@example.com', 1)) },
            ]),
          ).rejects.toThrow();
          await expect(
            store.contactLists.write([
              { userId: alice, decide: put(list('alice@example.com', 1)) },
              { userId: alice, decide: put(list('alice@example.com', 2)) },
            ]),
          ).rejects.toThrow(/each user once/);
          await expect(
            store.transaction(async (tx) => {
              await tx.contactLists.write([{ userId: alice, decide: put(list('alice@example.com', 1)) }]);
              throw new Error('dry run');
            }),
          ).rejects.toThrow('dry run');
          expect(await store.contactLists.get(alice)).toMatchObject({ version: 0, contacts: [] });
          expect(await feed.settled()).toEqual([]);
        } finally {
          await feed.stop();
        }
      });

      it('serializes concurrent writers of the same list on its version row', async () => {
        const [alice] = await newUsers('alice@example.com');
        const bump = (current: ContactList): ContactListDecision<number> => ({
          next: { ...current, version: current.version + 1 },
          contentChanged: false,
          report: current.version + 1,
        });
        const versions = await Promise.all(
          Array.from({ length: 5 }, () => store.contactLists.write([{ userId: alice, decide: bump }])),
        );
        expect(versions.flat().sort()).toEqual([1, 2, 3, 4, 5]);
      });

      it('reads the allow/block list presence authorization uses', async () => {
        const [alice] = await newUsers('alice@example.com');
        await store.contactLists.write([{ userId: alice, decide: put(list('alice@example.com', 1)) }]);
        expect(
          (await store.contactLists.accessRules('alice@example.com')).sort((a, b) =>
            a.pattern.localeCompare(b.pattern),
          ),
        ).toEqual([
          { pattern: '*', action: 'block' },
          { pattern: 'example.com', action: 'allow' },
        ]);
        expect(await store.contactLists.accessRules('nobody@example.com')).toEqual([]);
      });

      it('streams exports in byte order of aor, in batches, by home or for one user', async () => {
        await store.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1' });
        // Byte order puts 'B' before 'a' whatever the database's collation says.
        const aors = ['a@x', 'B@x', 'b@x', 'é@x', 'z@x'];
        for (const aor of aors) await db.query('INSERT INTO users (aor) VALUES ($1)', [aor]);
        await store.homes.setPlacement('a@x', 'pool1');
        await store.homes.setPlacement('z@x', 'pool1');
        const walk = async (filter: { home?: string; aor?: string }) => {
          const batches: string[][] = [];
          await store.contactLists.exportLists(filter, 2, async (lists) => {
            batches.push(lists.map((l) => l.user));
          });
          return batches;
        };
        expect(await walk({})).toEqual([['sip:B@x', 'sip:a@x'], ['sip:b@x', 'sip:z@x'], ['sip:é@x']]);
        expect(await walk({ home: 'pool1' })).toEqual([['sip:a@x', 'sip:z@x']]);
        expect(await walk({ aor: 'b@x' })).toEqual([['sip:b@x']]);
        expect(await walk({ aor: 'nobody@x' })).toEqual([]);
        // The same read with each list left as its text (the contacts benchmark's floor).
        for (const filter of [{}, { home: 'pool1' }, { aor: 'b@x' }, { aor: 'nobody@x' }]) {
          const batches: string[][] = [];
          await store.contactLists.exportListTexts(filter, 2, async (rows) => {
            batches.push(rows.map((r) => `sip:${r.aor}`));
            for (const r of rows) expect(JSON.parse(r.list)).toEqual([null, null, null, null]);
          });
          expect(batches).toEqual(await walk(filter));
        }
      });

      it("deleting users deletes their lists, whichever statement deletes them, and nobody else's", async () => {
        const [alice, bob, carol] = await newUsers(
          'alice@example.com',
          'bob@example.com',
          'carol@example.com',
        );
        await db.query("UPDATE users SET source = 'ldap:corp' WHERE id = $1", [bob]);
        await store.contactLists.write(
          [alice, bob, carol].map((id, i) => ({ userId: id, decide: put(list(`u${i}@x`, 1)) })),
        );
        const rows = async () =>
          (
            await db.query<{ t: string; n: number }>(
              `SELECT t, count(*)::int AS n FROM (
                 SELECT 'contacts' AS t, user_id FROM contacts UNION ALL
                 SELECT 'groups', user_id FROM contact_groups UNION ALL
                 SELECT 'rules', user_id FROM access_rules UNION ALL
                 SELECT 'versions', user_id FROM contact_list_versions) r
               WHERE user_id = ANY($1::bigint[]) GROUP BY t ORDER BY t`,
              [[alice, bob, carol].map(String)],
            )
          ).rows;
        expect(await rows()).toEqual([
          { t: 'contacts', n: 6 },
          { t: 'groups', n: 9 },
          { t: 'rules', n: 6 },
          { t: 'versions', n: 3 },
        ]);
        expect(await store.users.removeUser('alice@example.com')).toBe(true);
        expect(await store.users.removeDirectoryUsers(['bob@example.com'])).toEqual(['bob@example.com']);
        expect(await rows()).toEqual([
          { t: 'contacts', n: 2 },
          { t: 'groups', n: 3 },
          { t: 'rules', n: 2 },
          { t: 'versions', n: 1 },
        ]);
        expect((await store.contactLists.get(carol)).contacts).toHaveLength(2);
        // An administrator's SQL, several users in one statement.
        await db.query('DELETE FROM users WHERE id = ANY($1::bigint[])', [[carol].map(String)]);
        expect(await rows()).toEqual([]);
        expect((await db.query('SELECT 1 FROM contacts')).rows).toHaveLength(0);
      });

      it('exports each list as getMany reads it: version, groups and contacts in order, rules', async () => {
        await seedContactLists(db, 3, 4);
        await seedContactLists(db, 1, 0, 3);
        const owners = await store.contactLists.findOwners([0, 1, 2, 3].map((i) => `user${i}@example.com`));
        const one = owners.get('user1@example.com')!.id;
        await db.query(
          `INSERT INTO access_rules (user_id, pattern, action) VALUES ($1, 'example.com', 'allow'), ($1, '*', 'block')`,
          [one],
        );
        await db.query(`INSERT INTO contact_groups (user_id, name, position) VALUES ($1, 'A "b" & c', 1)`, [
          one,
        ]);
        await db.query(
          `UPDATE contacts SET groups = ARRAY['Team', 'A "b" & c'], position = 9 - position WHERE user_id = $1`,
          [one],
        );
        const exported: ContactList[] = [];
        await store.contactLists.exportLists({}, 3, async (lists) => {
          exported.push(...lists);
        });
        const read = await store.contactLists.getMany([...owners.values()]);
        const inOrder = [...owners.values()].sort((a, b) => (a.aor < b.aor ? -1 : 1));
        expect(exported).toEqual(inOrder.map((o) => read.get(o.id)));
        expect(exported[1]).toMatchObject({
          version: 1,
          groups: [{ name: 'Team' }, { name: 'A "b" & c' }],
          accessRules: [
            { pattern: '*', action: 'block' },
            { pattern: 'example.com', action: 'allow' },
          ],
        });
        expect(exported[1].contacts.map((c) => c.uri)).toEqual(
          [3, 2, 1, 0].map((c) => `sip:contact${c}.${one}@example.org`),
        );
        expect(exported[3]).toMatchObject({ version: 0, groups: [], contacts: [], accessRules: [] });
      });

      it('seeds users and lists in bulk for tests and benchmarks', async () => {
        await seedContactLists(db, 3, 4);
        await seedContactLists(db, 2, 0, 3);
        const owners = await store.contactLists.findOwners(['user0@example.com', 'user4@example.com']);
        const zero = await store.contactLists.get(owners.get('user0@example.com')!.id);
        expect(zero).toMatchObject({ version: 1, groups: [{ name: 'Team' }] });
        expect(zero.contacts).toHaveLength(4);
        expect(zero.contacts[3]).toMatchObject({
          displayName: 'Contact 3',
          subscribed: true,
          groups: ['Team'],
        });
        expect(await store.contactLists.get(owners.get('user4@example.com')!.id)).toMatchObject({
          version: 0,
          groups: [],
          contacts: [],
        });
      });
    });

    describe('servers', () => {
      it("reads the database's clock", async () => {
        const before = Date.now();
        const clock = await store.servers.clock();
        expect(clock).toBeInstanceOf(Date);
        expect(Math.abs(clock.getTime() - before)).toBeLessThan(60_000);
      });

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

    describe('client version rules', () => {
      beforeEach(async () => {
        await db.exec(
          "TRUNCATE client_policies; UPDATE client_policy_default SET action = 'allow', upgrade_url = NULL, reason = ''",
        );
      });

      it('keeps rules in order 1..n through add, move and remove', async () => {
        const repo = store.clientPolicies;
        const a = await repo.add({
          product: 'JsSIP',
          versions: '<3.10',
          action: 'upgrade',
          upgradeUrl: 'https://u.example',
        });
        const b = await repo.add({ product: 'SIPp', versions: '*', action: 'block', reason: 'lab' });
        const c = await repo.add({ product: 'baresip', versions: '>=3', action: 'allow', position: 1 });
        expect((await repo.list()).map((r) => [r.id, r.position])).toEqual([
          [c.id, 1],
          [a.id, 2],
          [b.id, 3],
        ]);
        expect(await repo.get(a.id)).toMatchObject({
          product: 'JsSIP',
          versions: '<3.10',
          upgradeUrl: 'https://u.example',
        });
        expect(await repo.move(b.id, 1)).toMatchObject({ id: b.id, position: 1 });
        expect((await repo.list()).map((r) => r.id)).toEqual([b.id, c.id, a.id]);
        expect(await repo.move(b.id, 99)).toMatchObject({ position: 3 });
        expect(await repo.move(12345, 1)).toBeUndefined();
        expect(await repo.remove(c.id)).toMatchObject({ id: c.id });
        expect(await repo.remove(c.id)).toBeUndefined();
        expect((await repo.list()).map((r) => [r.id, r.position])).toEqual([
          [a.id, 1],
          [b.id, 2],
        ]);
        await expect(repo.add({ product: 'X', versions: '*', action: 'upgrade' })).rejects.toThrow();
      });

      it('replaces every rule and the default at once', async () => {
        const repo = store.clientPolicies;
        await repo.add({ product: 'Old', versions: '*', action: 'block' });
        const rules = await repo.replaceAll(
          [
            { product: 'JsSIP', versions: '<3.10', action: 'upgrade', upgradeUrl: 'https://u.example' },
            { product: 'SIPp', versions: '*', action: 'block', reason: 'lab' },
          ],
          { action: 'block', reason: 'only these' },
        );
        expect(rules.map((r) => [r.product, r.position])).toEqual([
          ['JsSIP', 1],
          ['SIPp', 2],
        ]);
        expect(await repo.load()).toMatchObject({
          rules: [{ product: 'JsSIP' }, { product: 'SIPp', reason: 'lab' }],
          fallback: { action: 'block', reason: 'only these' },
        });
      });

      it('has one default, allow until set', async () => {
        const repo = store.clientPolicies;
        expect(await repo.getDefault()).toEqual({ action: 'allow', reason: '' });
        expect(
          await repo.setDefault({ action: 'upgrade', upgradeUrl: 'https://u.example', reason: 'old' }),
        ).toEqual({
          action: 'allow',
          reason: '',
        });
        expect(await repo.load()).toEqual({
          rules: [],
          fallback: { action: 'upgrade', upgradeUrl: 'https://u.example', reason: 'old' },
        });
      });

      it('announces every change on the client policies channel', async () => {
        const feed = await recordChannel(db, CLIENT_POLICIES_CHANNEL);
        const r = await store.clientPolicies.add({ product: 'JsSIP', versions: '*', action: 'block' });
        await store.clientPolicies.move(r.id, 1);
        await store.clientPolicies.remove(r.id);
        await store.clientPolicies.setDefault({ action: 'block', reason: '' });
        expect(await feed.settled()).toEqual([`add ${r.id}`, `move ${r.id}`, `remove ${r.id}`, 'default']);
        await feed.stop();
      });
    });

    describe('message archive', () => {
      beforeEach(async () => {
        await db.exec('TRUNCATE archive');
      });

      it('writes batches in one statement, searches by user, peer, time and words, purges by age', async () => {
        const t = (m: number) => new Date(T0.getTime() + m * 60_000);
        const row = (m: number, sender: string, recipient: string, body: string, result = 200) => ({
          at: t(m),
          sender,
          recipient,
          contentType: 'text/plain',
          body,
          size: Buffer.byteLength(body),
          result,
          serverId: 'fe1',
        });
        await store.archive.insertBatch([]);
        await store.archive.insertBatch([
          row(0, 'a@example.com', 'b@example.com', 'Hello Bob'),
          row(1, 'b@example.com', 'a@example.com', 'héllo back'),
          row(2, 'c@example.com', 'a@example.com', 'offline', 480),
        ]);
        const all = await store.archive.search({ limit: 10 });
        expect(all.map((r) => r.body)).toEqual(['Hello Bob', 'héllo back', 'offline']);
        expect(all[1]).toMatchObject({ size: 11, result: 200, serverId: 'fe1', contentType: 'text/plain' });
        expect(all[0].at).toEqual(t(0));
        const q = (query: Partial<Parameters<Store['archive']['search']>[0]>) =>
          store.archive.search({ limit: 10, ...query }).then((rows) => rows.map((r) => r.body));
        expect(await q({ user: 'a@example.com', with: 'b@example.com' })).toEqual([
          'Hello Bob',
          'héllo back',
        ]);
        expect(await q({ user: 'c@example.com' })).toEqual(['offline']);
        expect(await q({ since: t(1), until: t(2) })).toEqual(['héllo back']);
        expect(await q({ words: ['HELLO', 'bob'] })).toEqual(['Hello Bob']);
        expect(await q({ afterId: all[1].id })).toEqual(['offline']);
        expect(await store.archive.purgeBefore(t(2))).toBe(2);
        expect(await q({})).toEqual(['offline']);
      });

      it('keeps bodies and addresses byte for byte through the bulk write (COPY escapes)', async () => {
        const odd = 'tab\there\nnew line\r\\N not null \\ back\\slash é 😀';
        await store.archive.insertBatch([
          {
            at: T0,
            sender: 'a\\b@example.com',
            recipient: 'c\td@example.com',
            contentType: 'text/plain; charset="utf-8"',
            body: odd,
            size: Buffer.byteLength(odd),
            result: 0,
            serverId: '',
          },
        ]);
        const [row] = await store.archive.search({ limit: 1 });
        expect(row).toMatchObject({
          sender: 'a\\b@example.com',
          recipient: 'c\td@example.com',
          contentType: 'text/plain; charset="utf-8"',
          body: odd,
          serverId: '',
        });
      });

      it('answers --text words from the trigram index (009_archive_text_search.sql)', async () => {
        const rows = Array.from({ length: 2000 }, (_, i) => ({
          at: new Date(T0.getTime() + i * 1000),
          sender: `u${i % 50}@example.com`,
          recipient: 'boss@example.com',
          contentType: 'text/plain',
          body: i === 1234 ? 'the Quarterly figures are in' : `message number ${i}`,
          size: 20,
          result: 200,
          serverId: 'fe1',
        }));
        await store.archive.insertBatch(rows);
        const found = await store.archive.search({ limit: 10, words: ['quarterly'] });
        expect(found.map((r) => r.body)).toEqual(['the Quarterly figures are in']);
        // The planner can answer the search's ILIKE '%word%' from the index instead of reading every row.
        const plan = await db.transaction(async (tx) => {
          await tx.query('SET LOCAL enable_seqscan = off');
          const { rows: lines } = await tx.query<{ 'QUERY PLAN': string }>(
            "EXPLAIN SELECT id FROM archive WHERE body ILIKE '%quarterly%'",
          );
          return lines.map((l) => l['QUERY PLAN']).join('\n');
        });
        expect(plan).toMatch(/Index Scan on archive_body_trgm_idx/);
      });
    });

    describe('user groups', () => {
      it("replaces a source's memberships, announces changes, answers members and groups", async () => {
        for (const name of ['ann', 'ben', 'cat'])
          await store.users.createUser({ aor: `${name}@example.com` });
        const got: string[] = [];
        const stop = await db.listen(GROUPS_CHANNEL, (p) => got.push(p));
        const first = await store.groups.replaceMemberships('ldap:central', [
          { group: 'Sales', aor: 'Ann@example.com' },
          { group: 'sales', aor: 'ben@example.com' },
          { group: 'Sales', aor: 'ben@example.com' },
          { group: 'ops', aor: 'ben@example.com' },
          { group: 'ops', aor: 'nobody@example.com' },
        ]);
        expect(first).toEqual({ added: 3, removed: 0 });
        expect(await store.groups.membersOf(['SALES', 'none'])).toEqual([
          'ann@example.com',
          'ben@example.com',
        ]);
        expect(await store.groups.membersOf([])).toEqual([]);
        expect(await store.groups.groupsOf('BEN@example.com')).toEqual(['ops', 'sales']);
        await expect.poll(() => got).toEqual(['']);
        const same = await store.groups.replaceMemberships('ldap:central', [
          { group: 'sales', aor: 'ann@example.com' },
          { group: 'sales', aor: 'ben@example.com' },
          { group: 'ops', aor: 'ben@example.com' },
        ]);
        expect(same).toEqual({ added: 0, removed: 0 });
        const next = await store.groups.replaceMemberships('ldap:central', [
          { group: 'sales', aor: 'cat@example.com' },
          { group: 'ops', aor: 'ben@example.com' },
        ]);
        expect(next).toEqual({ added: 1, removed: 2 });
        expect(await store.groups.membersOf(['sales', 'ops'])).toEqual([
          'ben@example.com',
          'cat@example.com',
        ]);
        await expect.poll(() => got).toEqual(['', '']);
        // A removed user leaves its groups.
        await store.users.removeUser('cat@example.com');
        expect(await store.groups.groupsOf('cat@example.com')).toEqual([]);
        expect(await store.groups.replaceMemberships('ldap:central', [])).toEqual({ added: 0, removed: 1 });
        await stop();
      });
    });

    describe('usage rollup', () => {
      beforeEach(async () => {
        await db.exec('TRUNCATE usage_daily, usage_active_users');
      });

      it("adds servers' increments per day and home: sums, peaks, distinct active users", async () => {
        const u = store.usage;
        const inc = { messages: 0, bytes: 0, signedIn: 0, activeUsers: [] as string[] };
        await u.add({
          ...inc,
          day: '2030-01-01',
          home: 'pool1',
          serverId: 'fe1',
          messages: 3,
          bytes: 30,
          signedIn: 5,
          activeUsers: ['a@x', 'b@x'],
        });
        await u.add({
          ...inc,
          day: '2030-01-01',
          home: 'pool1',
          serverId: 'fe1',
          messages: 2,
          bytes: 20,
          signedIn: 4,
          activeUsers: ['a@x'],
        });
        await u.add({
          ...inc,
          day: '2030-01-01',
          home: 'pool1',
          serverId: 'fe2',
          messages: 1,
          bytes: 10,
          signedIn: 2,
          activeUsers: ['b@x', 'c@x'],
        });
        await u.add({ ...inc, day: '2030-01-02', home: 'std', serverId: 's1', activeUsers: ['d@x'] });
        await u.add({ ...inc, day: '2030-01-05', home: 'std', serverId: 's1', messages: 9 });
        expect(await u.days('2030-01-01', '2030-01-03')).toEqual([
          { day: '2030-01-01', home: 'pool1', activeUsers: 3, peakSignedIn: 7, messages: 6, bytes: 60 },
          { day: '2030-01-02', home: 'std', activeUsers: 1, peakSignedIn: 0, messages: 0, bytes: 0 },
        ]);
        await store.users.createUser({ aor: 'e@example.com', displayName: 'e' });
        expect(await u.enabledUsersByHome('std')).toContainEqual({ home: 'std', enabledUsers: 1 });
        expect((await u.days('2030-01-02', '2030-02-01')).map((d) => d.day)).toEqual([
          '2030-01-02',
          '2030-01-05',
        ]);
      });
    });

    describe('directory: replicated users and the sync journal', () => {
      beforeEach(async () => {
        await db.exec(
          'TRUNCATE directory_sync_ops, directory_sync_runs, directory_watermarks, directory_sync_cookies, directory_joins, directory_sync_lock CASCADE',
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
        // The interrupted run's ops are pruned; their counts stay in its summary.
        expect(await j.lastOpSeq(first.runId)).toBe(0);
        expect(await j.opCounts(first.runId)).toEqual({ done: 1, failed: 1, pending: 1 });
        await j.recordOps(second.runId, [
          { seq: 1, forest: 'north', anchor: 'a1', action: 'update', contactDn: 'cn=1' },
        ]);
        await j.markOps(second.runId, [1], 'done');
        await j.finishRun(second.runId, 'succeeded', { added: 0 });
        expect(await j.runStatus(second.runId)).toBe('succeeded');
        // A finished run keeps no ops either: the table does not grow run after run.
        expect(await j.lastOpSeq(second.runId)).toBe(0);
        expect(await j.opCounts(second.runId)).toEqual({ done: 1 });
        expect(await queryNumber(db, 'SELECT count(*) AS n FROM directory_sync_ops')).toBe(0);
        expect(await j.runStatus(second.runId + 1000)).toBeUndefined();
      });

      it('prunes finished runs past 90 days when a run ends, keeping the newest 100 whatever their age', async () => {
        const j = store.directoryJournal;
        const runs = async () => {
          const { rows } = await db.query<{ id: string; resumed_from: string | null }>(
            'SELECT id, resumed_from FROM directory_sync_runs ORDER BY id',
          );
          return rows.map((r) => ({
            id: Number(r.id),
            resumedFrom: r.resumed_from && Number(r.resumed_from),
          }));
        };
        const addRuns = async (count: number, daysAgo: number) => {
          await db.query(
            `INSERT INTO directory_sync_runs (status, mode, holder, started_at, finished_at)
             SELECT 'succeeded', 'incremental', 'host:old', now() - make_interval(days => $2), now() - make_interval(days => $2)
               FROM generate_series(1, $1)`,
            [count, daysAgo],
          );
          return (await runs()).slice(-count);
        };
        const finishOne = async () => {
          const run = await j.startRun({ mode: 'incremental', dryRun: false, holder: 'host:1' });
          await j.finishRun(run.runId, 'succeeded', {});
          return run.runId;
        };
        // 150 runs of four months ago: the newest 100 (the one ending now included) stay.
        const old = await addRuns(150, 120);
        // The run that resumed an old one still stands; the link to a pruned run is dropped.
        await db.query('UPDATE directory_sync_runs SET resumed_from = $1 WHERE id = $2', [
          old[60].id,
          old[61].id,
        ]);
        await db.query('UPDATE directory_sync_runs SET resumed_from = $1 WHERE id = $2', [
          old[40].id,
          old[41].id,
        ]);
        const latest = await finishOne();
        let left = await runs();
        expect(left.length).toBe(100);
        expect(left[0].id).toBe(old[51].id);
        expect(left.at(-1)?.id).toBe(latest);
        expect(left.find((r) => r.id === old[61].id)?.resumedFrom).toBe(old[60].id);
        // Runs of the last 90 days all stay, however many.
        await addRuns(150, 10);
        await finishOne();
        left = await runs();
        // The old runs go once 100 newer ones stand; the recent ones and the run of the first check stay.
        expect(left.length).toBe(152);
        expect(left[0].id).toBe(latest);
        await db.query('DELETE FROM directory_sync_runs');
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

        // addJoins inserts joins of anchors that have none; one already there is refused.
        const odd = join('d', {
          sourceDn: 'uid=d\tx,ou=new\\line',
          state: 'disabled',
          attributes: { displayName: ['D "quoted"\nname'], parleyEnabled: ['FALSE'] },
          disabledAt: at(20),
          disabledReason: 'source-disabled',
        });
        await j.addJoins([join('e'), odd]);
        await j.addJoins([]);
        const added = await j.joins('north');
        expect(added.get('d')).toEqual(odd);
        expect(added.get('e')).toEqual(join('e'));
        await expect(j.addJoins([join('b')])).rejects.toMatchObject({ code: '23505' });
        expect((await j.joins('north')).get('b')?.state).toBe('disabled');
      });

      it('keeps content-sync cookies and reads joins by anchor, waiting ones and counts', async () => {
        const j = store.directoryJournal;
        expect(await j.syncCookie('north')).toBeUndefined();
        await j.setSyncCookie('north', Buffer.from('rid=000,csn=1'));
        await j.setSyncCookie('north', Buffer.from([0, 1, 2, 255]));
        expect(await j.syncCookie('north')).toEqual(Buffer.from([0, 1, 2, 255]));
        expect(await j.syncCookie('south')).toBeUndefined();

        const join = (anchor: string, extra: Partial<Join> = {}): Join => ({
          forest: 'north',
          anchor,
          sourceDn: `uid=${anchor}`,
          contactDn: `cn=north-${anchor}`,
          sipAddress: `${anchor}@example.com`,
          state: 'active',
          attributes: { displayName: [anchor] },
          attributesHash: `h-${anchor}`,
          ...extra,
        });
        await j.saveJoins([
          join('a'),
          join('b', { state: 'disabled', disabledAt: at(10), disabledReason: 'source-gone' }),
          join('c', { state: 'disabled', disabledAt: at(100), disabledReason: 'source-disabled' }),
          join('d', { state: 'conflict' }),
          join('e', { forest: 'south' }),
        ]);
        const some = await j.joinsFor('north', ['a', 'c', 'e', 'zz']);
        expect([...some.keys()].sort()).toEqual(['a', 'c']);
        expect(some.get('c')).toEqual(
          join('c', { state: 'disabled', disabledAt: at(100), disabledReason: 'source-disabled' }),
        );
        expect((await j.joinsFor('north', [])).size).toBe(0);
        expect((await j.waitingJoins('north', at(50))).map((x) => x.anchor)).toEqual(['b', 'd']);
        expect((await j.waitingJoins('north', at(100))).map((x) => x.anchor)).toEqual(['b', 'c', 'd']);
        const pages: string[][] = [];
        for await (const page of j.joinAnchors('north', 3)) pages.push(page);
        expect(pages).toEqual([['a', 'b', 'c'], ['d']]);
        expect(await j.contactCount('north')).toBe(3);
        expect(await j.contactCount('south')).toBe(1);
        const held = await j.claimsFor(['a@example.com', 'd@example.com', 'e@example.com', 'x@example.com']);
        expect([...held.keys()].sort()).toEqual(['a@example.com', 'e@example.com']);
        expect(held.get('e@example.com')).toEqual({ forest: 'south', anchor: 'e', sourceDn: 'uid=e' });
        expect((await j.claimsFor([])).size).toBe(0);
      });
    });
    describe('wave migration: accounts, placement moves and the journal', () => {
      beforeEach(async () => {
        await db.exec('TRUNCATE migration_users, migration_waves, migration_lock CASCADE');
        await store.homes.upsertHome({
          name: 'legacy1',
          kind: 'standard',
          address: 'sip:legacy1.example.com',
        });
        await store.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1.example.com' });
      });

      it("reads and writes accounts with every realm's secrets; an existing user keeps its home", async () => {
        const erin = await store.users.createUser({
          aor: 'erin@example.com',
          home: 'pool1',
          displayName: 'Old',
        });
        await store.users.setCredentials(erin.id, 'old.realm', { ha1Md5: 'x', ha1Sha256: 'y' });
        const feed = await recordChannel(db, USERS_CHANNEL);
        const ids = await store.users.writeAccounts(
          [
            {
              aor: 'Erin@example.com',
              displayName: 'Erin',
              enabled: false,
              source: 'ldap:north',
              sourceAnchor: 'a1',
              credentials: [
                { realm: 'example.com', ha1Md5: 'm1', ha1Sha256: 's1' },
                { realm: 'other.com', ha1Md5: 'm2', ha1Sha256: 's2' },
              ],
            },
            {
              aor: 'gina@example.com',
              displayName: 'Gina',
              enabled: true,
              source: 'local',
              sourceAnchor: null,
              credentials: [],
            },
          ],
          'legacy1',
        );
        expect([...ids.keys()].sort()).toEqual(['erin@example.com', 'gina@example.com']);
        expect(ids.get('erin@example.com')).toBe(erin.id);
        expect((await feed.settled()).sort()).toEqual(['erin@example.com', 'gina@example.com']);
        await feed.stop();
        expect(
          await store.users.readAccounts(['erin@example.com', 'gina@example.com', 'ghost@example.com']),
        ).toEqual([
          {
            aor: 'erin@example.com',
            displayName: 'Erin',
            enabled: false,
            source: 'ldap:north',
            sourceAnchor: 'a1',
            credentials: [
              { realm: 'example.com', ha1Md5: 'm1', ha1Sha256: 's1' },
              { realm: 'other.com', ha1Md5: 'm2', ha1Sha256: 's2' },
            ],
          },
          {
            aor: 'gina@example.com',
            displayName: 'Gina',
            enabled: true,
            source: 'local',
            sourceAnchor: null,
            credentials: [],
          },
        ]);
        expect((await store.users.getUser('erin@example.com'))?.home).toBe('pool1');
        expect((await store.users.getUser('gina@example.com'))?.home).toBe('legacy1');
        expect(await store.users.readAccounts([])).toEqual([]);
        expect((await store.users.writeAccounts([], null)).size).toBe(0);
      });

      it('moves placement in one statement, announcing only real moves on both channels; lists users placed elsewhere', async () => {
        await store.users.createUser({ aor: 'a@example.com', home: 'legacy1' });
        await store.users.createUser({ aor: 'b@example.com', home: 'pool1' });
        await store.users.createUser({ aor: 'c@example.com' });
        const placement = await recordChannel(db, PLACEMENT_CHANNEL);
        const users = await recordChannel(db, USERS_CHANNEL);
        const moved = await store.homes.movePlacement(
          ['A@example.com', 'b@example.com', 'ghost@example.com'],
          'pool1',
        );
        expect(moved).toEqual(['a@example.com']);
        expect(await placement.settled()).toEqual(['a@example.com']);
        expect(await users.settled()).toEqual(['a@example.com']);
        await placement.stop();
        await users.stop();
        await expect(store.homes.movePlacement(['c@example.com'], 'nowhere')).rejects.toThrow();
        expect(
          await store.homes.getPlacements(['a@example.com', 'c@example.com', 'ghost@example.com']),
        ).toEqual(
          new Map([
            ['a@example.com', 'pool1'],
            ['c@example.com', null],
          ]),
        );
        await store.homes.movePlacement(['c@example.com'], 'legacy1');
        expect(await store.homes.listPlacedElsewhere('legacy1')).toEqual([
          { aor: 'a@example.com', home: 'pool1', address: 'sip:pool1.example.com' },
          { aor: 'b@example.com', home: 'pool1', address: 'sip:pool1.example.com' },
        ]);
        expect(await store.homes.listPlacedElsewhere('pool1')).toEqual([
          { aor: 'c@example.com', home: 'legacy1', address: 'sip:legacy1.example.com' },
        ]);
      });

      it('journals waves and users: begin is idempotent, states move, other waves hold their users', async () => {
        const j = store.migrationJournal;
        const w = await j.beginWave({
          name: 'w1',
          sourceHome: 'legacy1',
          targetHome: 'pool1',
          aors: ['a@example.com', 'B@example.com'],
        });
        expect(w).toMatchObject({
          name: 'w1',
          sourceHome: 'legacy1',
          targetHome: 'pool1',
          state: 'running',
          users: 2,
        });
        await j.setUserStates('w1', [{ aor: 'a@example.com', state: 'copied', checksum: 'c1' }]);
        const again = await j.beginWave({
          name: 'w1',
          sourceHome: 'legacy1',
          targetHome: 'pool1',
          aors: ['a@example.com', 'b@example.com', 'c@example.com'],
        });
        expect(again.users).toBe(3);
        expect(await j.waveUsers('w1')).toEqual([
          { aor: 'a@example.com', state: 'copied', checksum: 'c1' },
          { aor: 'b@example.com', state: 'pending' },
          { aor: 'c@example.com', state: 'pending' },
        ]);
        await j.setUserStates('w1', [
          { aor: 'a@example.com', state: 'placed' },
          { aor: 'c@example.com', state: 'failed', error: 'gone' },
        ]);
        expect(await j.waveUsers('w1')).toEqual([
          { aor: 'a@example.com', state: 'placed', checksum: 'c1' },
          { aor: 'b@example.com', state: 'pending' },
          { aor: 'c@example.com', state: 'failed', error: 'gone' },
        ]);
        expect(await j.countByState('w1')).toEqual({ placed: 1, pending: 1, failed: 1 });
        expect(await j.heldByOtherWaves('w2', ['a@example.com', 'b@example.com', 'c@example.com'])).toEqual(
          new Map([
            ['a@example.com', 'w1'],
            ['b@example.com', 'w1'],
          ]),
        );
        expect((await j.heldByOtherWaves('w1', ['a@example.com'])).size).toBe(0);
        await j.setWaveState('w1', 'done', { finished: true, verified: true, summary: { moved: 2 } });
        const done = await j.getWave('w1');
        expect(done).toMatchObject({ state: 'done', summary: { moved: 2 } });
        expect(done?.finishedAt).toBeInstanceOf(Date);
        expect(done?.verifiedAt).toBeInstanceOf(Date);
        await j.setWaveState('w1', 'moved');
        expect((await j.getWave('w1'))?.verifiedAt).toBeUndefined();
        expect((await j.listWaves()).map((x) => x.name)).toEqual(['w1']);
        expect(await j.getWave('nope')).toBeUndefined();
      });

      it('one migration at a time: the lock is refused, taken over when stale or dead, released', async () => {
        const j = store.migrationJournal;
        expect(await j.acquireLock('host:1', 'w1', 60)).toEqual({ acquired: true });
        const refused = await j.acquireLock('host:2', 'w2', 60);
        expect(refused).toMatchObject({ acquired: false, heldBy: { holder: 'host:1', wave: 'w1' } });
        expect(await j.acquireLock('host:1', 'w1', 60)).toEqual({ acquired: true });
        expect(await j.acquireLock('host:2', 'w2', 60, (h) => h === 'host:1')).toEqual({ acquired: true });
        expect(await j.heartbeat('host:1')).toBe(false);
        expect(await j.heartbeat('host:2')).toBe(true);
        await db.query("UPDATE migration_lock SET heartbeat_at = now() - interval '2 minutes'");
        expect(await j.acquireLock('host:3', 'w3', 60)).toEqual({ acquired: true });
        await j.releaseLock('host:2');
        expect(await j.acquireLock('host:4', 'w4', 60)).toMatchObject({ acquired: false });
        await j.releaseLock('host:3');
        expect(await j.acquireLock('host:4', 'w4', 60)).toEqual({ acquired: true });
        await j.releaseLock('host:4');
      });
    });
  });
}
