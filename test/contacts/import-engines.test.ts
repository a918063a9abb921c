import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportContactLists } from '../../src/contacts/export.js';
import { type ImportOptions, importContactLists } from '../../src/contacts/import.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import type { ContactList } from '../../src/contacts/model.js';
import {
  CONTACT_LISTS_CHANNEL,
  ContactListRepository,
  orderContactList,
} from '../../src/store/contact-lists.js';
import { migrate } from '../../src/store/migrate.js';
import { openDatabase } from '../../src/store/open.js';
import { createPostgresDatabase } from '../../src/store/postgres.js';
import type { Database } from '../../src/store/sql.js';
import { createStore } from '../../src/store/store.js';
import {
  contactListContents as contents,
  createNumberedUsers,
  fillGeneratedLists,
  HOSTILE,
  hostileList,
} from '../support/contact-lists.js';
import { createTestDatabase, queryNumber } from '../support/database.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

/**
 * The import's guarantees on both engines (the embedded store through COPY FROM a blob,
 * PostgreSQL through COPY FROM STDIN, and without COPY as through the embedded socket): the same rows as the source, nothing written from a
 * file whose bad element comes after several batches of owner lookups, and a killed import
 * that a re-run finishes with nothing lost or doubled. Then the same of an import that
 * writes while it validates (writeWhileValidating: one transaction, each batch written as
 * soon as it validated, committed once the whole file has): a file rejected after batches
 * were written leaves the stored lists, their versions (and their times) and the
 * notifications as they were; a killed import leaves nothing and its re-run writes
 * everything once; a dry run writes nothing; a batch that fails inside the transaction is
 * retried user by user and undoes only itself.
 */
// More users than a batch of owner lookups (200): the bad element is met in a later batch.
const USERS = 450;
const CONTACTS = 3;

let postgres: TestPostgres;
let dir: string;
let file: string;
let expected: string;
/** A file of hostileList's lists (every fifth one empty), and those lists in stored form. */
let hostileFile: string;
let hostileLists: ContactList[];
const HOSTILE_USERS = 30;

async function storedRows(db: Database): Promise<number> {
  return queryNumber(
    db,
    `SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM contact_groups)
          + (SELECT count(*) FROM access_rules) + (SELECT count(*) FROM contact_list_versions) AS n`,
  );
}

/** Every stored row of the lists and their versions, the versions' times included. */
async function storedState(db: Database): Promise<string> {
  const { rows } = await db.query(
    `SELECT u.aor, v.version, v.updated_at::text AS at FROM contact_list_versions v
       JOIN users u ON u.id = v.user_id ORDER BY u.aor COLLATE "C"`,
  );
  return `${await contents(db)}\n${JSON.stringify(rows)}`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-import-engines-'));
  postgres = await startTestPostgres();
  const source = await createTestDatabase();
  try {
    await createNumberedUsers(source, USERS);
    await fillGeneratedLists(source, USERS, CONTACTS);
    file = join(dir, 'all.xml');
    await exportContactLists(createStore(source), { scope: { kind: 'all' }, out: file });
    expected = await contents(source);
  } finally {
    await source.close();
  }
  const hostile = await createTestDatabase();
  try {
    await createNumberedUsers(hostile, HOSTILE_USERS);
    const repository = new ContactListRepository(hostile);
    const owners = await repository.findOwners(
      Array.from({ length: HOSTILE_USERS }, (_, i) => `user${i}@example.com`),
    );
    hostileLists = [];
    for (let i = 0; i < HOSTILE_USERS; i++) {
      const list =
        i % 5 === 0 ? { ...hostileList(i), groups: [], contacts: [], accessRules: [] } : hostileList(i);
      await replaceContactList(repository, owners.get(`user${i}@example.com`)!.id, list);
      hostileLists.push(orderContactList(structuredClone(list)));
    }
    hostileFile = join(dir, 'hostile.xml');
    await exportContactLists(createStore(hostile), { scope: { kind: 'all' }, out: hostileFile });
  } finally {
    await hostile.close();
  }
}, 120_000);

afterAll(async () => {
  await postgres?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const engines: [string, () => Promise<Database>][] = [
  ['PGlite', () => createTestDatabase()],
  ['PostgreSQL', async () => openDatabase({ url: await postgres.createDatabase() })],
  // As a client of a running server's embedded socket reaches the store: no COPY, contacts go in with unnest.
  [
    'PostgreSQL without COPY',
    async () => {
      const db = createPostgresDatabase(await postgres.createDatabase());
      await migrate(db);
      return db;
    },
  ],
];

/**
 * `text` with its last <user>'s first contact stripped of its uri, written as late-bad-NAME.xml:
 * a file whose problem is found after 400 lists were validated. Returns the file and the line.
 */
function lateBadFile(text: string, name: string): { bad: string; line: number } {
  const at = text.indexOf('<contact uri=', text.lastIndexOf('<user '));
  const bad = join(dir, `late-bad-${name}.xml`);
  writeFileSync(bad, `${text.slice(0, at)}<contact x=${text.slice(at + '<contact uri='.length)}`);
  return { bad, line: text.slice(0, at).split('\n').length };
}

/** An import of the file, in batches of 50, that dies (the process killed) after its third batch was written. */
async function killedAfterThirdBatch(db: Database, options: Partial<ImportOptions> = {}): Promise<void> {
  let batches = 0;
  await expect(
    importContactLists(createStore(db), {
      file,
      mode: 'merge',
      batchSize: 50,
      ...options,
      onProgress: (p) => {
        if (p.phase === 'write' && ++batches === 3) throw new Error('killed');
      },
    }),
  ).rejects.toThrow('killed');
}

describe.each(engines)('contact-list import on %s', (name, open) => {
  async function target(): Promise<Database> {
    const db = await open();
    await createNumberedUsers(db, USERS);
    return db;
  }

  it('writes every list as the source has it, and re-running changes nothing', async () => {
    const db = await target();
    try {
      const result = await importContactLists(createStore(db), { file, mode: 'replace', batchSize: 7 });
      expect(result).toMatchObject({ status: 'complete', imported: USERS, changed: USERS, failures: [] });
      expect(await contents(db)).toBe(expected);
      const again = await importContactLists(createStore(db), { file, mode: 'merge' });
      expect(again).toMatchObject({ status: 'complete', imported: USERS, changed: 0, unchanged: USERS });
      expect(await contents(db)).toBe(expected);
    } finally {
      await db.close();
    }
  });

  it('writes nothing when the bad element is the last of the file', async () => {
    const db = await target();
    try {
      const { bad, line } = lateBadFile(readFileSync(file, 'utf8'), name);
      const result = await importContactLists(createStore(db), { file: bad, mode: 'replace', batchSize: 20 });
      expect(result.status).toBe('invalid');
      expect(result.errors[0]).toMatchObject({ line, reason: expect.stringContaining('uri') });
      expect(result).toMatchObject({ imported: 0, changed: 0, successes: [], failures: [] });
      expect(await storedRows(db)).toBe(0);
    } finally {
      await db.close();
    }
  });

  it('a killed import is finished by running it again: nothing lost, nothing doubled', async () => {
    const db = await target();
    try {
      await killedAfterThirdBatch(db);
      const written = await queryNumber(db, 'SELECT count(DISTINCT user_id) AS n FROM contacts');
      expect(written).toBeGreaterThanOrEqual(150);
      expect(written).toBeLessThan(USERS);
      const again = await importContactLists(createStore(db), { file, mode: 'merge' });
      expect(again).toMatchObject({
        status: 'complete',
        imported: USERS,
        changed: USERS - written,
        unchanged: written,
      });
      expect(await contents(db)).toBe(expected);
    } finally {
      await db.close();
    }
  });

  /** As the command on the embedded store: written while validated, one transaction. */
  const streamed = (options: ImportOptions) => ({ ...options, writeWhileValidating: true });

  it('writing while validating: a file rejected after batches were written leaves lists, versions and notifications as they were', async () => {
    const db = await target();
    try {
      await importContactLists(createStore(db), { file, mode: 'replace' });
      const before = await storedState(db);
      // Every list of the bad file differs from the stored one (so each batch rewrites rows,
      // bumps versions and queues notifications), and its last <user> is bad.
      const text = readFileSync(file, 'utf8').replaceAll('subscribed="true"', 'subscribed="false"');
      const { bad, line } = lateBadFile(text, `${name}-changed`);
      const heard: string[] = [];
      const stop = await db.listen(CONTACT_LISTS_CHANNEL, (aor) => heard.push(aor));
      try {
        let written = 0;
        const result = await importContactLists(
          createStore(db),
          streamed({
            file: bad,
            mode: 'replace',
            batchSize: 20,
            onProgress: (p) => {
              if (p.phase === 'write') written = p.users;
            },
          }),
        );
        expect(written).toBeGreaterThanOrEqual(400);
        expect(result.status).toBe('invalid');
        expect(result.errors[0]).toMatchObject({ line, reason: expect.stringContaining('uri') });
        expect(result).toMatchObject({ imported: 0, changed: 0, successes: [], failures: [] });
        // A notification sent after the import arrives after any the import could have sent.
        await db.notify(CONTACT_LISTS_CHANNEL, 'end of the test');
        await expect.poll(() => heard.includes('end of the test'), { timeout: 10_000 }).toBe(true);
        expect(heard).toEqual(['end of the test']);
      } finally {
        await stop();
      }
      expect(await storedState(db)).toBe(before);
    } finally {
      await db.close();
    }
  });

  it('writing while validating: a killed import leaves nothing, and running it again writes every list once', async () => {
    const db = await target();
    try {
      await killedAfterThirdBatch(db, { writeWhileValidating: true });
      expect(await queryNumber(db, 'SELECT count(*) AS n FROM contacts')).toBe(0);
      expect(await queryNumber(db, 'SELECT count(*) AS n FROM contact_list_versions')).toBe(0);
      const again = await importContactLists(
        createStore(db),
        streamed({ file, mode: 'merge', batchSize: 40 }),
      );
      expect(again).toMatchObject({ status: 'complete', imported: USERS, changed: USERS, unchanged: 0 });
      expect(await contents(db)).toBe(expected);
      const third = await importContactLists(createStore(db), streamed({ file, mode: 'replace' }));
      expect(third).toMatchObject({ status: 'complete', imported: USERS, changed: 0, unchanged: USERS });
      expect(await contents(db)).toBe(expected);
    } finally {
      await db.close();
    }
  });

  it('writing while validating: a dry run reports what would change and writes nothing', async () => {
    const db = await target();
    try {
      const result = await importContactLists(
        createStore(db),
        streamed({ file, mode: 'replace', dryRun: true, batchSize: 100 }),
      );
      expect(result).toMatchObject({ status: 'complete', imported: USERS, changed: USERS, dryRun: true });
      expect(await queryNumber(db, 'SELECT count(*) AS n FROM contact_list_versions')).toBe(0);
    } finally {
      await db.close();
    }
  });

  it('writing while validating: a batch failing inside the transaction is retried user by user and undoes only itself', async () => {
    const db = await target();
    try {
      // The store refuses one user's contacts: its batch fails, then its user alone.
      await db.exec(`
        CREATE FUNCTION refuse_user7() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.user_id = (SELECT id FROM users WHERE aor = 'user7@example.com') THEN
            RAISE EXCEPTION 'refused for the test';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_user7 BEFORE INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION refuse_user7();`);
      const result = await importContactLists(
        createStore(db),
        streamed({ file, mode: 'replace', batchSize: 25 }),
      );
      expect(result).toMatchObject({ status: 'partial', imported: USERS - 1, changed: USERS - 1 });
      expect(result.failures).toEqual([
        expect.objectContaining({
          user: 'sip:user7@example.com',
          code: 'WRITE_FAILED',
          reason: expect.stringContaining('refused for the test'),
        }),
      ]);
      const user7 = "(SELECT id FROM users WHERE aor = 'user7@example.com')";
      expect(
        await queryNumber(db, `SELECT count(*) AS n FROM contact_list_versions WHERE user_id = ${user7}`),
      ).toBe(0);
      expect(await queryNumber(db, 'SELECT count(DISTINCT user_id) AS n FROM contacts')).toBe(USERS - 1);
    } finally {
      await db.close();
    }
  });
});

describe.each(engines)('an import of lists with escaped characters on %s', (_name, open) => {
  /** The stored lists of user0..user{HOSTILE_USERS-1}, contents only (versions left out). */
  async function storedLists(db: Database): Promise<Omit<ContactList, 'version'>[]> {
    const repository = new ContactListRepository(db);
    const owners = await repository.findOwners(hostileLists.map((_, i) => `user${i}@example.com`));
    const stored = await repository.getMany([...owners.values()]);
    return hostileLists.map((_, i) => {
      const { version: _version, ...content } = stored.get(owners.get(`user${i}@example.com`)!.id)!;
      return content;
    });
  }
  const expected = () => hostileLists.map(({ version: _version, ...content }) => content);

  it('stores the file lists exactly into empty lists (prepared rows) and over stored ones (lists built from the rows)', async () => {
    const db = await open();
    try {
      await createNumberedUsers(db, HOSTILE_USERS);
      const first = await importContactLists(createStore(db), {
        file: hostileFile,
        mode: 'replace',
        batchSize: 7,
      });
      expect(first).toMatchObject({ status: 'complete', imported: HOSTILE_USERS, failures: [] });
      // Users with an empty list in the file stay as they were: unchanged, at the file's version.
      expect(first.changed).toBe(HOSTILE_USERS - HOSTILE_USERS / 5);
      expect(first.successes.find((s) => s.user === 'sip:user1@example.com')).toMatchObject({
        changed: true,
        version: 1,
        contactsAdded: HOSTILE.length,
      });
      expect(await storedLists(db)).toEqual(expected());
      // Every stored list now differs from the file: a merge then compares and merges each.
      const repository = new ContactListRepository(db);
      const owners = await repository.findOwners(hostileLists.map((_, i) => `user${i}@example.com`));
      for (const [i, list] of hostileLists.entries()) {
        await replaceContactList(repository, owners.get(`user${i}@example.com`)!.id, {
          ...list,
          // The last contact: a merge appends what the stored list lacks, so the order comes back.
          contacts: list.contacts.slice(0, -1),
          accessRules: [],
        });
      }
      const merged = await importContactLists(createStore(db), {
        file: hostileFile,
        mode: 'merge',
        batchSize: 7,
      });
      expect(merged).toMatchObject({ status: 'complete', imported: HOSTILE_USERS, failures: [] });
      expect(await storedLists(db)).toEqual(expected());
      const again = await importContactLists(createStore(db), { file: hostileFile, mode: 'replace' });
      expect(again).toMatchObject({ status: 'complete', changed: 0, unchanged: HOSTILE_USERS });
    } finally {
      await db.close();
    }
  });
});
