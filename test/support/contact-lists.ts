import { generateContactList } from '../../src/contacts/generate.js';
import { replaceContactList } from '../../src/contacts/lists.js';
import type { ContactList } from '../../src/contacts/model.js';
import { ContactListRepository } from '../../src/store/contact-lists.js';
import type { Sql } from '../../src/store/sql.js';

/** Users user0@example.com .. user{count-1}@example.com, as the contact-list tests name them. */
export async function createNumberedUsers(db: Sql, count: number): Promise<void> {
  await db.query(
    `INSERT INTO users (aor) SELECT 'user' || g || '@example.com' FROM generate_series(0, $1::int - 1) g`,
    [count],
  );
}

/** Gives each numbered user its generated list (generateContactList) of `contacts` contacts. */
export async function fillGeneratedLists(db: Sql, users: number, contacts: number): Promise<void> {
  const repository = new ContactListRepository(db);
  const { rows } = await db.query<{ id: number; aor: string }>('SELECT id, aor FROM users');
  for (const row of rows) {
    const index = Number(row.aor.slice(4, row.aor.indexOf('@')));
    await replaceContactList(repository, Number(row.id), generateContactList(index, contacts, users));
  }
}

/**
 * Every stored row of the contact-list tables (timestamps left out) as text, in byte order
 * whatever the database's collation, to compare two stores (of either engine).
 */
export async function contactListContents(db: Sql): Promise<string> {
  const parts = [];
  for (const [table, columns] of [
    ['contact_groups', 'u.aor, t.name, t.position'],
    ['contacts', 'u.aor, t.uri, t.display_name, t.subscribed, t.groups, t.position'],
    ['access_rules', 'u.aor, t.pattern, t.action'],
    ['contact_list_versions', 'u.aor, t.version'],
  ]) {
    const second = columns.split(', ')[1];
    const { rows } = await db.query(
      `SELECT ${columns} FROM ${table} t JOIN users u ON u.id = t.user_id
        ORDER BY u.aor COLLATE "C", ${second}::text COLLATE "C"`,
    );
    parts.push(JSON.stringify(rows));
  }
  return parts.join('\n');
}

/**
 * Every character COPY's text format escapes, and what array literals quote: the values
 * hostileList puts in every field of its lists.
 */
export const HOSTILE = [
  'tab\there',
  'new\nline',
  'cr\rhere',
  'back\\slash',
  'q"uote',
  'a","b',
  '\\"',
  '😀 李',
  '',
];

export function hostileList(index: number): ContactList {
  const groups = HOSTILE.filter((name) => name !== '').map((name) => ({ name: `${name} ${index}` }));
  return {
    user: `sip:user${index}@example.com`,
    version: index % 3,
    groups,
    contacts: HOSTILE.map((name, c) => ({
      uri: `sip:c${c}.${index}@example.org`,
      displayName: name,
      subscribed: c % 2 === 0,
      groups: groups.filter((_, g) => (g + c) % 3 !== 0).map((g) => g.name),
    })),
    accessRules: [
      { pattern: 'example.org', action: 'allow' },
      { pattern: '*', action: 'block' },
      { pattern: `sip:c1.${index}@example.org`, action: 'block' },
    ],
  };
}
