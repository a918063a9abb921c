import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addContact,
  mergeContactList,
  removeContact,
  removeGroup,
  replaceContactList,
  setAccessRule,
} from '../../src/contacts/lists.js';
import type { ContactList } from '../../src/contacts/model.js';
import { CONTACT_LISTS_CHANNEL, ContactListRepository } from '../../src/store/contact-lists.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { createTestDatabase } from '../support/database.js';

let db: PgliteDatabase;
let lists: ContactListRepository;
let next = 0;

async function newUser(): Promise<number> {
  const { rows } = await db.query<{ id: number }>('INSERT INTO users (aor) VALUES ($1) RETURNING id', [
    `user${++next}@example.com`,
  ]);
  return Number(rows[0].id);
}

const sample = (version = 0): ContactList => ({
  user: 'sip:ignored@example.com',
  version,
  groups: [{ name: 'Team' }, { name: 'Friends' }],
  contacts: [
    { uri: 'sip:bob@example.com', displayName: 'Bob', subscribed: true, groups: ['Team'] },
    { uri: 'sip:carol@example.com', displayName: '', subscribed: false, groups: ['Friends', 'Team'] },
  ],
  accessRules: [
    { pattern: 'example.com', action: 'allow' },
    { pattern: '*', action: 'block' },
  ],
});

beforeAll(async () => {
  db = await createTestDatabase();
  lists = new ContactListRepository(db);
});
afterAll(async () => {
  await db?.close();
});

describe('contact-list editing', () => {
  it('returns an empty list at version 0 for a new user', async () => {
    const id = await newUser();
    expect(await lists.get(id)).toEqual({
      user: `sip:user${next}@example.com`,
      version: 0,
      groups: [],
      contacts: [],
      accessRules: [],
    });
  });

  it('replaces a list atomically, in canonical order, and a re-run changes nothing', async () => {
    const id = await newUser();
    const first = await replaceContactList(lists, id, sample());
    expect(first).toMatchObject({ changed: true, version: 1, contactsAdded: 2 });
    const stored = await lists.get(id);
    expect(stored.version).toBe(1);
    expect(stored.groups).toEqual([{ name: 'Team' }, { name: 'Friends' }]);
    expect(stored.contacts[1].groups).toEqual(['Team', 'Friends']);
    expect(stored.accessRules.map((r) => r.pattern)).toEqual(['*', 'example.com']);
    expect(await replaceContactList(lists, id, sample())).toMatchObject({ changed: false, version: 1 });
    expect((await lists.get(id)).version).toBe(1);
  });

  it('takes a higher version from the source when the list ends up equal to it', async () => {
    const id = await newUser();
    expect(await replaceContactList(lists, id, sample(7))).toMatchObject({ changed: true, version: 7 });
    expect(await replaceContactList(lists, id, { ...sample(3), contacts: [] })).toMatchObject({
      changed: true,
      version: 8,
      contactsRemoved: 2,
    });
  });

  it('merges without dropping an existing contact', async () => {
    const id = await newUser();
    await replaceContactList(lists, id, sample());
    const change = await mergeContactList(lists, id, {
      user: '',
      version: 0,
      groups: [{ name: 'New' }],
      contacts: [
        { uri: 'sip:dave@example.com', displayName: 'Dave', subscribed: true, groups: ['New'] },
        { uri: 'sip:bob@example.com', displayName: 'Robert', subscribed: false, groups: ['New'] },
      ],
      accessRules: [{ pattern: '*', action: 'allow' }],
    });
    expect(change).toMatchObject({
      changed: true,
      version: 2,
      contactsAdded: 1,
      contactsUpdated: 1,
      contactsRemoved: 0,
    });
    const stored = await lists.get(id);
    expect(stored.groups.map((g) => g.name)).toEqual(['Team', 'Friends', 'New']);
    expect(stored.contacts.map((c) => c.uri)).toEqual([
      'sip:bob@example.com',
      'sip:carol@example.com',
      'sip:dave@example.com',
    ]);
    expect(stored.contacts[0]).toEqual({
      uri: 'sip:bob@example.com',
      displayName: 'Robert',
      subscribed: false,
      groups: ['Team', 'New'],
    });
    expect(stored.accessRules).toEqual([
      { pattern: '*', action: 'allow' },
      { pattern: 'example.com', action: 'allow' },
    ]);
  });

  it('stores group names with quotes, backslashes, braces and commas intact', async () => {
    const id = await newUser();
    const names = ['a\\b', 'say "hi"', '{x,y}', 'NULL', ' padded '];
    await replaceContactList(lists, id, {
      user: '',
      version: 0,
      groups: names.map((name) => ({ name })),
      contacts: [{ uri: 'sip:q@example.com', displayName: '', subscribed: true, groups: names }],
      accessRules: [],
    });
    expect((await lists.get(id)).contacts[0].groups).toEqual(names);
  });

  it('stores display names with the characters the bulk path escapes (tab, line ends, backslash, \\N)', async () => {
    const id = await newUser();
    const displayNames = ['tab\there', 'two\nlines', 'cr\r', 'back\\slash', '\\N', '', 'Zoë 李 😀'];
    const contacts = displayNames.map((displayName, i) => ({
      uri: `sip:c${i}@example.com`,
      displayName,
      subscribed: i % 2 === 0,
      groups: [],
    }));
    await replaceContactList(lists, id, { user: '', version: 0, groups: [], contacts, accessRules: [] });
    expect((await lists.get(id)).contacts).toEqual(contacts);
  });

  it('edits single entries and notifies the change feed', async () => {
    const id = await newUser();
    const seen: string[] = [];
    const stop = await db.listen(CONTACT_LISTS_CHANNEL, (aor) => seen.push(aor));
    await addContact(lists, id, {
      uri: 'sip:zed@example.com',
      displayName: 'Zed',
      subscribed: true,
      groups: ['G'],
    });
    await setAccessRule(lists, id, { pattern: 'sip:zed@example.com', action: 'block' });
    await removeGroup(lists, id, 'G');
    const list = await lists.get(id);
    expect(list).toMatchObject({
      version: 3,
      groups: [],
      accessRules: [{ pattern: 'sip:zed@example.com', action: 'block' }],
    });
    expect(list.contacts[0].groups).toEqual([]);
    expect(await removeContact(lists, id, 'sip:nobody@example.com')).toMatchObject({
      changed: false,
      version: 3,
    });
    await removeContact(lists, id, 'sip:zed@example.com');
    expect((await lists.get(id)).contacts).toEqual([]);
    await new Promise((r) => setTimeout(r, 50));
    await stop();
    expect(seen).toEqual(Array(4).fill(`user${next}@example.com`));
  });
});
