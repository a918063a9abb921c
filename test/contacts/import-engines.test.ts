import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportContactLists } from '../../src/contacts/export.js';
import { importContactLists } from '../../src/contacts/import.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import type { ContactList } from '../../src/contacts/model.js';
import { ContactListRepository, orderContactList } from '../../src/store/contact-lists.js';
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
 * that a re-run finishes with nothing lost or doubled.
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
      // The last <user>'s first contact loses its uri: found after 400 lists were validated.
      const text = readFileSync(file, 'utf8');
      const at = text.indexOf('<contact uri=', text.lastIndexOf('<user '));
      const bad = join(dir, `late-bad-${name}.xml`);
      writeFileSync(bad, `${text.slice(0, at)}<contact x=${text.slice(at + '<contact uri='.length)}`);
      const result = await importContactLists(createStore(db), { file: bad, mode: 'replace', batchSize: 20 });
      expect(result.status).toBe('invalid');
      expect(result.errors[0]).toMatchObject({
        line: text.slice(0, at).split('\n').length,
        reason: expect.stringContaining('uri'),
      });
      expect(result).toMatchObject({ imported: 0, changed: 0, successes: [], failures: [] });
      expect(await storedRows(db)).toBe(0);
    } finally {
      await db.close();
    }
  });

  it('a killed import is finished by running it again: nothing lost, nothing doubled', async () => {
    const db = await target();
    try {
      let batches = 0;
      await expect(
        importContactLists(createStore(db), {
          file,
          mode: 'merge',
          batchSize: 50,
          onProgress: (p) => {
            // The process dies after its third batch committed.
            if (p.phase === 'write' && ++batches === 3) throw new Error('killed');
          },
        }),
      ).rejects.toThrow('killed');
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
