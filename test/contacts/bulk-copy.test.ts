import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportContactLists } from '../../src/contacts/export.js';
import { generateContactList } from '../../src/contacts/generate.js';
import { importContactLists } from '../../src/contacts/import.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import { ContactListOwnersMissingError, ContactListRepository } from '../../src/store/contact-lists.js';
import { openDatabase } from '../../src/store/open.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { createPostgresDatabase } from '../../src/store/postgres.js';
import { copyTextField, type Database, type Sql } from '../../src/store/sql.js';
import { createStore } from '../../src/store/store.js';
import { createTestDatabase, queryNumber } from '../support/database.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

const USERS = 300;
const CONTACTS = 20;
const COLUMNS = ['user_id', 'uri', 'display_name', 'subscribed', 'groups', 'position'] as const;

let postgres: TestPostgres;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-bulk-copy-'));
  postgres = await startTestPostgres();
}, 120_000);

afterAll(async () => {
  await postgres?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function addUsers(db: Database, count: number): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO users (aor) SELECT 'user' || g || '@example.com' FROM generate_series(0, $1::int - 1) g RETURNING id`,
    [count],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

/** Sequential scans of table so far in tx's transaction (pg_stat_xact_user_tables). */
async function seqScans(tx: Sql, table: string): Promise<number> {
  const { rows } = await tx.query<{ seq_scan: number }>(
    'SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = $1',
    [table],
  );
  return Number(rows[0].seq_scan);
}

/** COPY text of n contact rows for one user, display names with every character COPY escapes. */
function contactRows(userId: number, n: number): { data: string; names: string[] } {
  const names: string[] = [];
  let data = '';
  for (let i = 0; i < n; i++) {
    const name = `C${i} tab\there back\\slash new\nline cr\r 😀 李 "q" ${'x'.repeat(i % 97)}`;
    names.push(name);
    data += `${userId}\tsip:c${i}@example.org\t${copyTextField(name)}\t${i % 2 ? 't' : 'f'}\t{"Team"}\t${i}\n`;
  }
  return { data, names };
}

describe('COPY FROM STDIN on PostgreSQL (Sql.copyFrom)', () => {
  it('writes rows of several CopyData messages exactly, escapes and characters outside the BMP included', async () => {
    const db = await openDatabase({ url: await postgres.createDatabase() });
    try {
      const [userId] = await addUsers(db, 1);
      // About 1.3 MB: several 256 KiB messages, cut at line ends (an emoji at every cut would break otherwise).
      const { data, names } = contactRows(userId, 9000);
      await db.transaction(async (tx) => {
        expect(tx.copyFrom).toBeTypeOf('function');
        await tx.copyFrom!('contacts', COLUMNS, data);
      });
      const { rows } = await db.query<{ display_name: string; subscribed: boolean; groups: string[] }>(
        'SELECT display_name, subscribed, groups FROM contacts WHERE user_id = $1 ORDER BY position',
        [userId],
      );
      expect(rows.map((r) => r.display_name)).toEqual(names);
      expect(rows[1].subscribed).toBe(true);
      expect(rows[0].groups).toEqual(['Team']);
    } finally {
      await db.close();
    }
  });

  it('a failing COPY rejects with PostgreSQL’s error, rolls its transaction back, and the store stays usable', async () => {
    const db = await openDatabase({ url: await postgres.createDatabase(), maxConnections: 1 });
    try {
      const [userId] = await addUsers(db, 1);
      const row = `${userId}\tsip:twice@example.org\t\tt\t{}\t0\n`;
      const failed = db.transaction(async (tx) => {
        await tx.query('INSERT INTO contact_groups (user_id, name) VALUES ($1, $2)', [userId, 'Team']);
        await tx.copyFrom!('contacts', COLUMNS, row + row);
      });
      await expect(failed).rejects.toMatchObject({ code: '23505' });
      expect(
        await queryNumber(
          db,
          'SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM contact_groups) AS n',
        ),
      ).toBe(0);
    } finally {
      await db.close();
    }
  });

  it('is not offered without the copy option (a client of the embedded socket falls back to unnest)', async () => {
    const db = createPostgresDatabase(await postgres.createDatabase());
    try {
      await db.transaction(async (tx) => {
        expect(tx.copyFrom).toBeUndefined();
      });
    } finally {
      await db.close();
    }
  });
});

describe('contacts without a foreign key to users (011_contacts_owned_by_store.sql)', () => {
  it('a user deleted while a write holds its list waits for the write, then takes what it wrote with it', async () => {
    const db = await openDatabase({ url: await postgres.createDatabase() });
    try {
      const [alice, bob] = await addUsers(db, 2);
      const store = createStore(db);
      let deleting: Promise<unknown> | undefined;
      await db.transaction(async (tx) => {
        await new ContactListRepository(tx).write(
          [alice, bob].map((userId) => ({
            userId,
            aor: `user${userId - alice}@example.com`,
            decide: (current) => ({
              next: { ...generateContactList(0, 3, 10), version: current.version + 1 },
              contentChanged: true,
              report: undefined,
            }),
          })),
        );
        // The write's rows are in, not committed; its owners' version rows are locked.
        deleting = db.query('DELETE FROM users WHERE id = $1', [alice]);
        await expect
          .poll(
            async () =>
              (
                await db.query<{ n: number }>(
                  "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM users%'",
                )
              ).rows[0].n,
            { interval: 20, timeout: 10_000 },
          )
          .toBe(1);
      });
      await deleting;
      const { rows } = await db.query<{ user_id: number; n: number }>(
        'SELECT user_id, count(*)::int AS n FROM contacts GROUP BY user_id',
      );
      expect(rows).toEqual([{ user_id: bob, n: 3 }]);
      expect((await store.contactLists.get(bob)).contacts).toHaveLength(3);
    } finally {
      await db.close();
    }
  });

  it("a write reads its batch's current lists by index even with the statistics of an empty table", async () => {
    const db = await openDatabase({ url: await postgres.createDatabase() });
    try {
      // As a store being filled by an import: contacts analysed empty, rows since, no autovacuum.
      await db.query('ALTER TABLE contacts SET (autovacuum_enabled = false)');
      const ids = await addUsers(db, 600);
      await db.query('ANALYZE contacts');
      await db.query(
        `INSERT INTO contacts (user_id, uri, position)
         SELECT u, 'sip:c' || c || '@example.org', c FROM unnest($1::bigint[]) u, generate_series(0, 19) c`,
        [ids.slice(0, 300).map(String)],
      );
      const scans = await db.transaction(async (tx) => {
        // The backend's counts not yet reported (the INSERT's scans) show here too: a difference.
        const before = await seqScans(tx, 'contacts');
        await new ContactListRepository(tx).write(
          ids.slice(300, 550).map((userId) => ({
            userId,
            aor: `user${userId - ids[0]}@example.com`,
            decide: (current) => ({ next: current, contentChanged: false, report: undefined }),
          })),
        );
        return (await seqScans(tx, 'contacts')) - before;
      });
      expect(scans).toBe(0);
    } finally {
      await db.close();
    }
  });

  it("a write updates its batch's version rows by index, not by hashing every version row", async () => {
    const db = await openDatabase({ url: await postgres.createDatabase() });
    try {
      const ids = await addUsers(db, 2000);
      await db.query('INSERT INTO contact_list_versions (user_id) SELECT unnest($1::bigint[])', [
        ids.map(String),
      ]);
      await db.query('ANALYZE contact_list_versions');
      const scans = await db.transaction(async (tx) => {
        const before = await seqScans(tx, 'contact_list_versions');
        await new ContactListRepository(tx).write(
          ids.slice(0, 250).map((userId) => ({
            userId,
            aor: `user${userId - ids[0]}@example.com`,
            decide: (current) => ({
              next: { ...current, version: current.version + 1 },
              contentChanged: false,
              report: undefined,
            }),
          })),
        );
        return (await seqScans(tx, 'contact_list_versions')) - before;
      });
      expect(scans).toBe(0);
      const { rows } = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM contact_list_versions WHERE version = 1',
      );
      expect(rows[0].n).toBe(250);
    } finally {
      await db.close();
    }
  });

  it('a write for a user deleted before it reports the owner missing and writes nothing', async () => {
    const db = await openDatabase({ url: await postgres.createDatabase() });
    try {
      const [alice] = await addUsers(db, 1);
      await db.query('DELETE FROM users WHERE id = $1', [alice]);
      const write = createStore(db).contactLists.write([
        {
          userId: alice,
          aor: 'user0@example.com',
          decide: () => ({ next: generateContactList(0, 3, 10), contentChanged: true, report: undefined }),
        },
      ]);
      await expect(write).rejects.toBeInstanceOf(ContactListOwnersMissingError);
      expect((await db.query('SELECT 1 FROM contacts')).rows).toHaveLength(0);
    } finally {
      await db.close();
    }
  });
});

describe('contact-list import into PostgreSQL through COPY', () => {
  let source: PgliteDatabase;
  let file: string;

  beforeAll(async () => {
    source = await createTestDatabase();
    const ids = await addUsers(source, USERS);
    for (const [index, id] of ids.entries()) {
      const { rows } = await source.query<{ aor: string }>('SELECT aor FROM users WHERE id = $1', [id]);
      const userIndex = Number(rows[0].aor.slice(4, rows[0].aor.indexOf('@')));
      await replaceContactList(
        createStore(source).contactLists,
        id,
        generateContactList(userIndex, CONTACTS + (index % 3), USERS),
      );
    }
    file = join(dir, 'all.xml');
    await exportContactLists(createStore(source), { scope: { kind: 'all' }, out: file });
  }, 120_000);

  afterAll(async () => {
    await source?.close();
  });

  it('imports every list with two writers (as the CLI does on PostgreSQL), reports in file order, and exports the same bytes again, reading ahead', async () => {
    const target = await openDatabase({ url: await postgres.createDatabase() });
    try {
      await addUsers(target, USERS);
      const written: number[] = [];
      const result = await importContactLists(createStore(target), {
        file,
        mode: 'replace',
        batchSize: 64,
        writers: 2,
        workDir: dir,
        onProgress: (p) => {
          if (p.phase === 'write') written.push(p.users);
        },
      });
      expect(result.status).toBe('complete');
      expect(result.changed).toBe(USERS);
      // Batches finish in any order; results are taken in the file's.
      const users = result.successes.map((s) => s.user);
      expect(users).toEqual([...users].sort());
      expect(written).toEqual([64, 128, 192, 256, 300]);
      expect(result.phases.ownerLookup.seconds).toBeGreaterThan(0);
      expect(result.phases.ownerLookup.seconds).toBeLessThanOrEqual(result.phases.validate.seconds);
      expect(result.phases.write.cpuSeconds).toBeGreaterThan(0);
      const again = join(dir, 'again.xml');
      // As the CLI exports from PostgreSQL: the next batch read while this one is written.
      await exportContactLists(createStore(target), {
        scope: { kind: 'all' },
        out: again,
        pageSize: 64,
        readAhead: true,
      });
      expect(readFileSync(again, 'utf8')).toBe(readFileSync(file, 'utf8'));
    } finally {
      await target.close();
    }
  });
});
