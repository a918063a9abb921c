import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportContactLists, fileNameForAor } from '../../src/contacts/export.js';
import { generateContactList } from '../../src/contacts/generate.js';
import { importContactLists } from '../../src/contacts/import.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import { restoreContactList } from '../../src/contacts/restore.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { createStore } from '../../src/store/store.js';
import { createTestDatabase } from '../support/database.js';

const USERS = 120;
const CONTACTS = 12;
let source: PgliteDatabase;
let target: PgliteDatabase;
let dir: string;

async function createUsers(db: PgliteDatabase, count: number, home?: string): Promise<Map<string, number>> {
  if (home)
    await db.query(
      "INSERT INTO homes (name, kind, address) VALUES ($1, 'pool', 'sip:pool.example.com') ON CONFLICT DO NOTHING",
      [home],
    );
  const { rows } = await db.query<{ id: number; aor: string }>(
    `INSERT INTO users (aor, home) SELECT 'user' || g || '@example.com', $2 FROM generate_series(0, $1::int - 1) g RETURNING id, aor`,
    [count, home ?? null],
  );
  return new Map(rows.map((r) => [r.aor, Number(r.id)]));
}

async function snapshot(db: PgliteDatabase): Promise<string> {
  const parts = [];
  for (const table of ['contact_groups', 'contacts', 'access_rules', 'contact_list_versions']) {
    const { rows } = await db.query(`SELECT * FROM ${table} ORDER BY 1, 2`);
    parts.push(JSON.stringify(rows, (_, v) => (v instanceof Date ? 'date' : v)));
  }
  return parts.join('\n');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parley-contacts-'));
  [source, target] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  const ids = await createUsers(source, USERS, 'pool1');
  for (let i = 0; i < USERS; i++) {
    const list = generateContactList(i, CONTACTS, USERS);
    await replaceContactList(createStore(source).contactLists, ids.get(`user${i}@example.com`)!, list);
  }
  // The target knows every user but one, and has a list of its own for user5.
  const targetIds = await createUsers(target, USERS);
  await target.query("DELETE FROM users WHERE aor = 'user7@example.com'");
  await replaceContactList(createStore(target).contactLists, targetIds.get('user5@example.com')!, {
    user: '',
    version: 0,
    groups: [],
    contacts: [{ uri: 'sip:keep@example.net', displayName: 'Keep me', subscribed: true, groups: [] }],
    accessRules: [],
  });
});

afterAll(async () => {
  await Promise.all([source?.close(), target?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('export and import', () => {
  it('exports all users to one file with a manifest of counts and checksums', async () => {
    const out = join(dir, 'all.xml');
    const result = await exportContactLists(createStore(source), {
      scope: { kind: 'all' },
      out,
      pageSize: 25,
    });
    expect(result).toMatchObject({ layout: 'file', users: USERS, files: 1 });
    const manifest = JSON.parse(readFileSync(`${out}.manifest.json`, 'utf8'));
    const bytes = readFileSync(out);
    expect(manifest).toMatchObject({
      format: 'parley-contact-lists-export',
      formatVersion: 1,
      scope: 'all',
      layout: 'file',
    });
    expect(manifest.files).toEqual([
      {
        path: 'all.xml',
        users: USERS,
        contacts: result.contacts,
        bytes: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
      },
    ]);
    expect(manifest.totals.users).toBe(USERS);
    // keyset pages in byte order of aor
    const users = [...bytes.toString('utf8').matchAll(/<user uri="sip:([^"]+)"/g)].map((m) => m[1]);
    expect(users).toEqual([...users].sort());
  });

  it('rejects an invalid file with line and column before writing anything', async () => {
    const text = readFileSync(join(dir, 'all.xml'), 'utf8');
    const lines = text.split('\n');
    const at = lines.findIndex((l, i) => i > 200 && l.includes('<contact uri='));
    lines[at] = lines[at].replace('<contact uri="sip:', '<contact uri="tel:');
    const bad = join(dir, 'bad.xml');
    writeFileSync(bad, lines.join('\n'));
    const before = await snapshot(target);
    const result = await importContactLists(createStore(target), { file: bad, mode: 'replace' });
    expect(result.status).toBe('invalid');
    expect(result.errors).toEqual([
      { line: at + 1, column: 16, reason: expect.stringMatching(/is not a SIP address/) },
    ]);
    expect(result.successes).toEqual([]);
    expect(await snapshot(target)).toBe(before);
  });

  it('reports duplicate users and contacts as problems', async () => {
    const file = join(dir, 'dupes.xml');
    writeFileSync(
      file,
      `<?xml version="1.0" encoding="UTF-8"?>
<contact-lists xmlns="urn:parley:contact-list:1" format-version="1">
  <user uri="sip:user1@example.com"><contacts><contact uri="sip:a@x.com"/><contact uri="sip:A@x.com"/></contacts></user>
  <user uri="sip:user2@example.com"/>
  <user uri="sip:USER2@example.com"/>
</contact-lists>
`,
    );
    const result = await importContactLists(createStore(target), { file });
    expect(result.status).toBe('invalid');
    expect(result.errors).toEqual([
      { line: 3, column: 84, reason: 'duplicate contact sip:a@x.com' },
      { line: 5, column: 3, reason: 'user sip:user2@example.com appears twice in the file' },
    ]);
  });

  it('dry run reports what would change and writes nothing', async () => {
    const before = await snapshot(target);
    const result = await importContactLists(createStore(target), {
      file: join(dir, 'all.xml'),
      mode: 'merge',
      dryRun: true,
    });
    expect(result).toMatchObject({
      status: 'partial',
      dryRun: true,
      imported: USERS - 1,
      changed: USERS - 1,
    });
    expect(await snapshot(target)).toBe(before);
  });

  it('merges into a store, reports the unknown user, keeps existing contacts, and a re-run is idempotent', async () => {
    const file = join(dir, 'all.xml');
    const result = await importContactLists(createStore(target), { file, mode: 'merge', batchSize: 16 });
    expect(result.status).toBe('partial');
    expect(result.failures).toEqual([
      {
        user: 'sip:user7@example.com',
        code: 'UNKNOWN_USER',
        reason: 'no user user7@example.com in this store',
        line: expect.any(Number),
        column: 3,
      },
    ]);
    expect(result.imported).toBe(USERS - 1);
    const id5 = (await target.query<{ id: number }>("SELECT id FROM users WHERE aor = 'user5@example.com'"))
      .rows[0].id;
    const five = await createStore(target).contactLists.get(Number(id5));
    expect(five.contacts[0].uri).toBe('sip:keep@example.net');
    expect(five.contacts.length).toBe(generateContactList(5, CONTACTS, USERS).contacts.length + 1);
    const before = await snapshot(target);
    const again = await importContactLists(createStore(target), { file, mode: 'merge' });
    expect(again).toMatchObject({ status: 'partial', changed: 0, unchanged: USERS - 1 });
    expect(await snapshot(target)).toBe(before);
  });

  it('round trip: export, import into an empty store, re-export is byte-identical', async () => {
    const empty = await createTestDatabase();
    try {
      await createUsers(empty, USERS);
      const file = join(dir, 'all.xml');
      const result = await importContactLists(createStore(empty), { file, mode: 'replace' });
      expect(result).toMatchObject({ status: 'complete', imported: USERS, failures: [] });
      const again = join(dir, 'again.xml');
      await exportContactLists(createStore(empty), { scope: { kind: 'all' }, out: again, pageSize: 7 });
      expect(readFileSync(again).equals(readFileSync(file))).toBe(true);
      // and per-user files: the same documents as the single file's users
      const perUser = join(dir, 'per-user');
      const exported = await exportContactLists(createStore(empty), { scope: { kind: 'all' }, out: perUser });
      expect(exported).toMatchObject({ layout: 'per-user', files: USERS, users: USERS });
      expect(readdirSync(perUser)).toContain(fileNameForAor('user42@example.com'));
      const manifest = JSON.parse(readFileSync(join(perUser, 'manifest.json'), 'utf8'));
      expect(manifest.files).toHaveLength(USERS);
      const entry = manifest.files.find((f: { path: string }) => f.path === 'user42@example.com.xml');
      expect(entry.sha256).toBe(
        createHash('sha256')
          .update(readFileSync(join(perUser, entry.path)))
          .digest('hex'),
      );
    } finally {
      await empty.close();
    }
  });

  it('exports one home, or one user, and refuses an unknown user', async () => {
    const home = await exportContactLists(createStore(source), {
      scope: { kind: 'home', home: 'pool1' },
      out: join(dir, 'home.xml'),
    });
    expect(home.users).toBe(USERS);
    const none = await exportContactLists(createStore(source), {
      scope: { kind: 'home', home: 'elsewhere' },
      out: join(dir, 'none.xml'),
    });
    expect(none.users).toBe(0);
    const one = await exportContactLists(createStore(source), {
      scope: { kind: 'user', aor: 'user3@example.com' },
      out: join(dir, 'one.xml'),
    });
    expect(one.users).toBe(1);
    await expect(
      exportContactLists(createStore(source), {
        scope: { kind: 'user', aor: 'nobody@example.com' },
        out: join(dir, 'nobody.xml'),
      }),
    ).rejects.toThrow(/no user nobody@example.com/);
  });

  it('restores one user from a nightly export and leaves all others untouched', async () => {
    const id9 = Number(
      (await target.query<{ id: number }>("SELECT id FROM users WHERE aor = 'user9@example.com'")).rows[0].id,
    );
    await replaceContactList(createStore(target).contactLists, id9, {
      user: '',
      version: 0,
      groups: [],
      contacts: [],
      accessRules: [],
    });
    const othersBefore = await target.query(
      'SELECT * FROM contacts WHERE user_id <> $1 ORDER BY user_id, uri',
      [id9],
    );
    const versionsBefore = await target.query(
      'SELECT * FROM contact_list_versions WHERE user_id <> $1 ORDER BY user_id',
      [id9],
    );
    for (const from of [join(dir, 'all.xml'), join(dir, 'per-user')]) {
      const result = await restoreContactList(createStore(target), { user: 'sip:user9@example.com', from });
      expect(result).toMatchObject({ status: 'complete', imported: 1, checksumVerified: true });
      const restored = await createStore(target).contactLists.get(id9);
      const expected = generateContactList(9, CONTACTS, USERS);
      expect(restored.contacts).toEqual(expected.contacts);
      expect(
        (await target.query('SELECT * FROM contacts WHERE user_id <> $1 ORDER BY user_id, uri', [id9])).rows,
      ).toEqual(othersBefore.rows);
      expect(
        (
          await target.query('SELECT * FROM contact_list_versions WHERE user_id <> $1 ORDER BY user_id', [
            id9,
          ])
        ).rows,
      ).toEqual(versionsBefore.rows);
    }
  });

  it('refuses to restore from a damaged export', async () => {
    const perUser = join(dir, 'per-user');
    const file = join(perUser, 'user11@example.com.xml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('version="', 'version="1'));
    await expect(
      restoreContactList(createStore(target), { user: 'user11@example.com', from: perUser }),
    ).rejects.toThrow(/does not match the sha256/);
  });
});
