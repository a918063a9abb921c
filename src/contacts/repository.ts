import type { Sql } from '../store/sql.js';
import type { AccessRule, Contact, ContactGroup, ContactList } from './model.js';
import { compareCodePoints } from './xml-serialize.js';

/**
 * The stored contact list of a user (tables contact_groups, contacts, access_rules,
 * contact_list_versions). The SIP server's `parley-contacts` event package, the import and
 * export commands and wave migrations all read and write lists through these functions.
 *
 * Every write runs in one transaction holding the user's contact_list_versions row lock,
 * so a client editing its list and an import of the same user serialize. A write that
 * changes nothing leaves the version alone, which makes re-running an import a no-op.
 */

/** Change feed channel: the payload is the aor (alice@example.com) whose list changed. */
export const CONTACT_LISTS_CHANNEL = 'parley_contact_lists';

export interface ContactListOwner {
  id: number;
  /** alice@example.com, as users.aor. */
  aor: string;
}

export interface ContactListChange {
  changed: boolean;
  /** Version after the write. */
  version: number;
  contactsAdded: number;
  contactsRemoved: number;
  contactsUpdated: number;
}

export interface WriteOptions {
  /** Send a change notification on CONTACT_LISTS_CHANNEL (default true). */
  notify?: boolean;
}

interface GroupRow {
  user_id: number | string;
  name: string;
}
interface RuleRow {
  user_id: number | string;
  pattern: string;
  action: 'allow' | 'block';
}

/** Finds users by aor (alice@example.com), for callers holding addresses rather than ids. */
export async function findContactListOwners(
  sql: Sql,
  aors: string[],
): Promise<Map<string, ContactListOwner>> {
  const owners = new Map<string, ContactListOwner>();
  if (aors.length === 0) return owners;
  const { rows } = await sql.query<{ id: number | string; aor: string }>(
    'SELECT id, aor FROM users WHERE aor = ANY($1::text[])',
    [aors],
  );
  for (const row of rows) owners.set(row.aor, { id: Number(row.id), aor: row.aor });
  return owners;
}

export async function getContactList(sql: Sql, userId: number): Promise<ContactList> {
  const { rows } = await sql.query<{ id: number | string; aor: string }>(
    'SELECT id, aor FROM users WHERE id = $1',
    [userId],
  );
  if (rows.length === 0) throw new Error(`no user with id ${userId}`);
  const lists = await getContactLists(sql, [{ id: Number(rows[0].id), aor: rows[0].aor }]);
  return lists.get(userId)!;
}

/** Lists of several users in four queries (exports page through users with this). */
export async function getContactLists(
  sql: Sql,
  owners: ContactListOwner[],
): Promise<Map<number, ContactList>> {
  const lists = new Map<number, ContactList>();
  if (owners.length === 0) return lists;
  for (const owner of owners) {
    lists.set(owner.id, { user: `sip:${owner.aor}`, version: 0, groups: [], contacts: [], accessRules: [] });
  }
  const ids = owners.map((o) => String(o.id));
  const [versions, groups, contacts, rules] = [
    await sql.query<{ user_id: number | string; version: number | string }>(
      'SELECT user_id, version FROM contact_list_versions WHERE user_id = ANY($1::bigint[])',
      [ids],
    ),
    await sql.query<GroupRow>(
      'SELECT user_id, name FROM contact_groups WHERE user_id = ANY($1::bigint[]) ORDER BY user_id, position, name COLLATE "C"',
      [ids],
    ),
    // One JSON text instead of rows: decoding 25,000 rows field by field costs several times more.
    await sql.query<{ j: string }>(
      `SELECT coalesce(json_agg(json_build_array(user_id, uri, display_name, subscribed, groups)
                                ORDER BY user_id, position, uri COLLATE "C"), '[]')::text AS j
         FROM contacts WHERE user_id = ANY($1::bigint[])`,
      [ids],
    ),
    await sql.query<RuleRow>(
      'SELECT user_id, pattern, action FROM access_rules WHERE user_id = ANY($1::bigint[])',
      [ids],
    ),
  ];
  for (const row of versions.rows) lists.get(Number(row.user_id))!.version = Number(row.version);
  for (const row of groups.rows) lists.get(Number(row.user_id))!.groups.push({ name: row.name });
  const contactRows = JSON.parse(contacts.rows[0].j) as [number, string, string, boolean, string[]][];
  for (const [userId, uri, displayName, subscribed, contactGroups] of contactRows) {
    lists.get(Number(userId))!.contacts.push({ uri, displayName, subscribed, groups: contactGroups });
  }
  for (const row of rules.rows)
    lists.get(Number(row.user_id))!.accessRules.push({ pattern: row.pattern, action: row.action });
  for (const list of lists.values()) {
    list.accessRules.sort((a, b) => compareCodePoints(a.pattern, b.pattern));
    orderContactGroups(list);
  }
  return lists;
}

/** Puts each contact's groups in the list's group order: equal lists, equal bytes. */
function orderContactGroups(list: ContactList): void {
  const rank = new Map(list.groups.map((g, i) => [g.name, i]));
  for (const contact of list.contacts) {
    contact.groups = contact.groups.filter((g) => rank.has(g)).sort((a, b) => rank.get(a)! - rank.get(b)!);
  }
}

/**
 * Makes the stored list exactly `list` (its user field is ignored: the owner is userId).
 * Atomic: readers see the old list or the new one. When the stored list ends up equal to
 * the given one and the given version is higher, the version is taken from it, so a list
 * exported at version 7 and imported into an empty store is at version 7 again.
 */
export function replaceContactList(
  sql: Sql,
  userId: number,
  list: ContactList,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(sql, userId, () => list, list, options);
}

/**
 * Adds `list` to the stored list without dropping anything: groups and access rules are
 * united, contacts the stored list lacks are appended, and for contacts in both the given
 * display name (when not empty) and subscribed flag win and groups are united.
 */
export function mergeContactList(
  sql: Sql,
  userId: number,
  list: ContactList,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(sql, userId, (current) => mergeLists(current, list), list, options);
}

export function mergeLists(current: ContactList, incoming: ContactList): ContactList {
  const groups: ContactGroup[] = [...current.groups];
  const groupNames = new Set(groups.map((g) => g.name));
  for (const group of incoming.groups) {
    if (!groupNames.has(group.name)) {
      groupNames.add(group.name);
      groups.push(group);
    }
  }
  const incomingByUri = new Map(incoming.contacts.map((c) => [c.uri, c]));
  const contacts: Contact[] = current.contacts.map((existing) => {
    const update = incomingByUri.get(existing.uri);
    if (!update) return existing;
    return {
      uri: existing.uri,
      displayName: update.displayName !== '' ? update.displayName : existing.displayName,
      subscribed: update.subscribed,
      groups: [...new Set([...existing.groups, ...update.groups])],
    };
  });
  const known = new Set(current.contacts.map((c) => c.uri));
  for (const contact of incoming.contacts) if (!known.has(contact.uri)) contacts.push(contact);
  const rules = new Map(current.accessRules.map((r) => [r.pattern, r.action]));
  for (const rule of incoming.accessRules) rules.set(rule.pattern, rule.action);
  const merged: ContactList = {
    user: current.user,
    version: current.version,
    groups,
    contacts,
    accessRules: [...rules].map(([pattern, action]) => ({ pattern, action })),
  };
  merged.accessRules.sort((a, b) => compareCodePoints(a.pattern, b.pattern));
  orderContactGroups(merged);
  return merged;
}

/** Adds a contact or updates it in place (keeping its position). */
export function addContact(
  sql: Sql,
  userId: number,
  contact: Contact,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) => {
      const groups = [...current.groups];
      for (const name of contact.groups) if (!groups.some((g) => g.name === name)) groups.push({ name });
      const index = current.contacts.findIndex((c) => c.uri === contact.uri);
      const contacts = [...current.contacts];
      if (index === -1) contacts.push(contact);
      else contacts[index] = contact;
      const next = { ...current, groups, contacts };
      orderContactGroups(next);
      return next;
    },
    undefined,
    options,
  );
}

export function removeContact(
  sql: Sql,
  userId: number,
  uri: string,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) => ({ ...current, contacts: current.contacts.filter((c) => c.uri !== uri) }),
    undefined,
    options,
  );
}

export function addGroup(
  sql: Sql,
  userId: number,
  name: string,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) =>
      current.groups.some((g) => g.name === name)
        ? current
        : { ...current, groups: [...current.groups, { name }] },
    undefined,
    options,
  );
}

/** Removes a group and takes its members out of it; the contacts themselves stay. */
export function removeGroup(
  sql: Sql,
  userId: number,
  name: string,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) => ({
      ...current,
      groups: current.groups.filter((g) => g.name !== name),
      contacts: current.contacts.map((c) => ({ ...c, groups: c.groups.filter((g) => g !== name) })),
    }),
    undefined,
    options,
  );
}

export function setAccessRule(
  sql: Sql,
  userId: number,
  rule: AccessRule,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) => {
      const rules = current.accessRules.filter((r) => r.pattern !== rule.pattern);
      rules.push(rule);
      rules.sort((a, b) => compareCodePoints(a.pattern, b.pattern));
      return { ...current, accessRules: rules };
    },
    undefined,
    options,
  );
}

export function removeAccessRule(
  sql: Sql,
  userId: number,
  pattern: string,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) => ({ ...current, accessRules: current.accessRules.filter((r) => r.pattern !== pattern) }),
    undefined,
    options,
  );
}

/** Same groups, contacts and rules, in the same order; versions and owner are not compared. */
export function sameContactListContent(a: ContactList, b: ContactList): boolean {
  return (
    JSON.stringify([a.groups, a.contacts, a.accessRules]) ===
    JSON.stringify([b.groups, b.contacts, b.accessRules])
  );
}

function writeContactList(
  sql: Sql,
  userId: number,
  compute: (current: ContactList) => ContactList,
  source: ContactList | undefined,
  options: WriteOptions,
): Promise<ContactListChange> {
  return writeContactListBatch(sql, [{ userId, compute, source }], options).then((changes) => changes[0]);
}

export interface ContactListWrite {
  userId: number;
  /** The new list from the stored one. */
  compute: (current: ContactList) => ContactList;
  /** The list the write came from (a file's), whose version is taken when the result equals it. */
  source?: ContactList;
}

/** Replaces the lists of several users in one transaction: what an import does a batch at a time. */
export function replaceContactLists(
  sql: Sql,
  lists: { userId: number; list: ContactList }[],
  options: WriteOptions = {},
): Promise<ContactListChange[]> {
  return writeContactListBatch(
    sql,
    lists.map(({ userId, list }) => ({ userId, compute: () => list, source: list })),
    options,
  );
}

/** Merges lists into several users' lists in one transaction (see mergeContactList). */
export function mergeContactLists(
  sql: Sql,
  lists: { userId: number; list: ContactList }[],
  options: WriteOptions = {},
): Promise<ContactListChange[]> {
  return writeContactListBatch(
    sql,
    lists.map(({ userId, list }) => ({
      userId,
      compute: (current) => mergeLists(current, list),
      source: list,
    })),
    options,
  );
}

/**
 * The one write path: lock the users' version rows, read their lists, compute, and write
 * only the lists that changed, with set-based statements (a dozen statements for a batch
 * of a hundred users, which is what makes a 100,000-user import take minutes, not hours).
 */
export async function writeContactListBatch(
  sql: Sql,
  writes: ContactListWrite[],
  options: WriteOptions = {},
): Promise<ContactListChange[]> {
  if (writes.length === 0) return [];
  const ids = writes.map((w) => w.userId);
  if (new Set(ids).size !== ids.length) throw new Error('a batch writes each user once');
  return sql.transaction(async (tx) => {
    // The row locks order concurrent writers of the same list (client edits, imports).
    // Taken in id order so two batches never deadlock.
    const sorted = [...ids].sort((a, b) => a - b).map(String);
    await tx.query(
      'INSERT INTO contact_list_versions (user_id) SELECT unnest($1::bigint[]) ON CONFLICT (user_id) DO NOTHING',
      [sorted],
    );
    const locked = await tx.query<{ user_id: number | string; aor: string }>(
      `SELECT v.user_id, u.aor FROM contact_list_versions v JOIN users u ON u.id = v.user_id
        WHERE v.user_id = ANY($1::bigint[]) ORDER BY v.user_id FOR UPDATE OF v`,
      [sorted],
    );
    const owners = new Map(
      locked.rows.map((r) => [Number(r.user_id), { id: Number(r.user_id), aor: r.aor }]),
    );
    for (const id of ids) if (!owners.has(id)) throw new Error(`no user with id ${id}`);
    const currentLists = await getContactLists(tx, [...owners.values()]);
    const changes: ContactListChange[] = [];
    const changed: { userId: number; list: ContactList; previous: ContactList }[] = [];
    const versions: { userId: number; version: number }[] = [];
    const notify: string[] = [];
    for (const write of writes) {
      const current = currentLists.get(write.userId)!;
      const next = canonical(write.compute(current));
      const isChanged = !sameContactListContent(current, next);
      const fileVersion =
        write.source && sameContactListContent(next, canonical(write.source)) ? write.source.version : 0;
      const version = isChanged
        ? Math.max(current.version + 1, fileVersion)
        : Math.max(current.version, fileVersion);
      changes.push({ changed: isChanged, version, ...countChanges(current, next) });
      if (isChanged) changed.push({ userId: write.userId, list: next, previous: current });
      if (version !== current.version) {
        versions.push({ userId: write.userId, version });
        notify.push(owners.get(write.userId)!.aor);
      }
    }
    if (changed.length > 0) await storeContents(tx, changed);
    if (versions.length > 0) {
      await tx.query(
        `UPDATE contact_list_versions v SET version = n.version, updated_at = now()
           FROM unnest($1::bigint[], $2::bigint[]) AS n(user_id, version) WHERE v.user_id = n.user_id`,
        [versions.map((v) => String(v.userId)), versions.map((v) => String(v.version))],
      );
    }
    if (notify.length > 0 && (options.notify ?? true)) {
      await tx.query('SELECT pg_notify($1, aor) FROM unnest($2::text[]) AS aor', [
        CONTACT_LISTS_CHANNEL,
        notify,
      ]);
    }
    return changes;
  });
}

/** Drops group references to groups the list does not declare, orders rules: the stored form. */
function canonical(list: ContactList): ContactList {
  const copy: ContactList = {
    ...list,
    groups: list.groups.map((g) => ({ name: g.name })),
    contacts: list.contacts.map((c) => ({
      uri: c.uri,
      displayName: c.displayName,
      subscribed: c.subscribed,
      groups: [...new Set(c.groups)],
    })),
    accessRules: list.accessRules.map((r) => ({ pattern: r.pattern, action: r.action })),
  };
  copy.accessRules.sort((a, b) => compareCodePoints(a.pattern, b.pattern));
  orderContactGroups(copy);
  return copy;
}

function countChanges(current: ContactList, next: ContactList) {
  const before = new Map(current.contacts.map((c) => [c.uri, JSON.stringify(c)]));
  const after = new Set(next.contacts.map((c) => c.uri));
  let contactsAdded = 0;
  let contactsUpdated = 0;
  for (const contact of next.contacts) {
    const old = before.get(contact.uri);
    if (old === undefined) contactsAdded++;
    else if (old !== JSON.stringify(contact)) contactsUpdated++;
  }
  let contactsRemoved = 0;
  for (const uri of before.keys()) if (!after.has(uri)) contactsRemoved++;
  return { contactsAdded, contactsRemoved, contactsUpdated };
}

/**
 * Rewrites the three tables of the given lists; positions follow array order. Rows are sent
 * as parallel arrays and expanded with unnest (the fastest bulk path both engines share
 * without COPY); tables are only cleared for users that had rows in them.
 */
async function storeContents(
  tx: Sql,
  lists: { userId: number; list: ContactList; previous: ContactList }[],
): Promise<void> {
  const clear = async (table: string, had: (l: ContactList) => boolean) => {
    const ids = lists.filter((l) => had(l.previous)).map((l) => String(l.userId));
    if (ids.length > 0) await tx.query(`DELETE FROM ${table} WHERE user_id = ANY($1::bigint[])`, [ids]);
  };
  await clear('contact_groups', (l) => l.groups.length > 0);
  await clear('contacts', (l) => l.contacts.length > 0);
  await clear('access_rules', (l) => l.accessRules.length > 0);
  const groups = { ids: [] as string[], names: [] as string[], positions: [] as number[] };
  const contacts = {
    ids: [] as string[],
    uris: [] as string[],
    names: [] as string[],
    subscribed: [] as boolean[],
    groups: [] as string[],
    positions: [] as number[],
  };
  const rules = { ids: [] as string[], patterns: [] as string[], actions: [] as string[] };
  for (const { userId, list } of lists) {
    const id = String(userId);
    list.groups.forEach((g, position) => {
      groups.ids.push(id);
      groups.names.push(g.name);
      groups.positions.push(position);
    });
    list.contacts.forEach((c, position) => {
      contacts.ids.push(id);
      contacts.uris.push(c.uri);
      contacts.names.push(c.displayName);
      contacts.subscribed.push(c.subscribed);
      contacts.groups.push(arrayLiteral(c.groups));
      contacts.positions.push(position);
    });
    for (const r of list.accessRules) {
      rules.ids.push(id);
      rules.patterns.push(r.pattern);
      rules.actions.push(r.action);
    }
  }
  if (groups.ids.length > 0) {
    await tx.query(
      `INSERT INTO contact_groups (user_id, name, position)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[])`,
      [groups.ids, groups.names, groups.positions],
    );
  }
  if (contacts.ids.length > 0) {
    // A contact's groups travel as one array literal each: a text[][] parameter cannot be ragged.
    await tx.query(
      `INSERT INTO contacts (user_id, uri, display_name, subscribed, groups, position)
       SELECT c.user_id, c.uri, c.display_name, c.subscribed, c.groups::text[], c.position
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::text[], $6::int[])
           AS c(user_id, uri, display_name, subscribed, groups, position)`,
      [contacts.ids, contacts.uris, contacts.names, contacts.subscribed, contacts.groups, contacts.positions],
    );
  }
  if (rules.ids.length > 0) {
    await tx.query(
      `INSERT INTO access_rules (user_id, pattern, action)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])`,
      [rules.ids, rules.patterns, rules.actions],
    );
  }
}

/** A PostgreSQL array literal of text: every element quoted, quotes and backslashes escaped. */
function arrayLiteral(values: string[]): string {
  return `{${values.map((v) => `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}
