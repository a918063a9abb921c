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
interface ContactRow {
  user_id: number | string;
  uri: string;
  display_name: string;
  subscribed: boolean;
  groups: string[];
}
interface RuleRow {
  user_id: number | string;
  pattern: string;
  action: 'allow' | 'block';
}

/** Finds users by aor (alice@example.com), for callers holding addresses rather than ids. */
export async function findContactListOwners(sql: Sql, aors: string[]): Promise<Map<string, ContactListOwner>> {
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
  const { rows } = await sql.query<{ id: number | string; aor: string }>('SELECT id, aor FROM users WHERE id = $1', [userId]);
  if (rows.length === 0) throw new Error(`no user with id ${userId}`);
  const lists = await getContactLists(sql, [{ id: Number(rows[0].id), aor: rows[0].aor }]);
  return lists.get(userId)!;
}

/** Lists of several users in four queries (exports page through users with this). */
export async function getContactLists(sql: Sql, owners: ContactListOwner[]): Promise<Map<number, ContactList>> {
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
      'SELECT user_id, name FROM contact_groups WHERE user_id = ANY($1::bigint[]) ORDER BY user_id, position, name',
      [ids],
    ),
    await sql.query<ContactRow>(
      `SELECT user_id, uri, display_name, subscribed, groups FROM contacts
        WHERE user_id = ANY($1::bigint[]) ORDER BY user_id, position, uri`,
      [ids],
    ),
    await sql.query<RuleRow>('SELECT user_id, pattern, action FROM access_rules WHERE user_id = ANY($1::bigint[])', [ids]),
  ];
  for (const row of versions.rows) lists.get(Number(row.user_id))!.version = Number(row.version);
  for (const row of groups.rows) lists.get(Number(row.user_id))!.groups.push({ name: row.name });
  for (const row of contacts.rows) {
    lists.get(Number(row.user_id))!.contacts.push({
      uri: row.uri,
      displayName: row.display_name,
      subscribed: row.subscribed,
      groups: row.groups,
    });
  }
  for (const row of rules.rows) lists.get(Number(row.user_id))!.accessRules.push({ pattern: row.pattern, action: row.action });
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
export function addContact(sql: Sql, userId: number, contact: Contact, options: WriteOptions = {}): Promise<ContactListChange> {
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

export function removeContact(sql: Sql, userId: number, uri: string, options: WriteOptions = {}): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) => ({ ...current, contacts: current.contacts.filter((c) => c.uri !== uri) }),
    undefined,
    options,
  );
}

export function addGroup(sql: Sql, userId: number, name: string, options: WriteOptions = {}): Promise<ContactListChange> {
  return writeContactList(
    sql,
    userId,
    (current) => (current.groups.some((g) => g.name === name) ? current : { ...current, groups: [...current.groups, { name }] }),
    undefined,
    options,
  );
}

/** Removes a group and takes its members out of it; the contacts themselves stay. */
export function removeGroup(sql: Sql, userId: number, name: string, options: WriteOptions = {}): Promise<ContactListChange> {
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

export function setAccessRule(sql: Sql, userId: number, rule: AccessRule, options: WriteOptions = {}): Promise<ContactListChange> {
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

export function removeAccessRule(sql: Sql, userId: number, pattern: string, options: WriteOptions = {}): Promise<ContactListChange> {
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
    JSON.stringify([a.groups, a.contacts, a.accessRules]) === JSON.stringify([b.groups, b.contacts, b.accessRules])
  );
}

async function writeContactList(
  sql: Sql,
  userId: number,
  compute: (current: ContactList) => ContactList,
  source: ContactList | undefined,
  options: WriteOptions,
): Promise<ContactListChange> {
  return sql.transaction(async (tx) => {
    // The row lock orders concurrent writers of the same list (client edits, imports).
    await tx.query('INSERT INTO contact_list_versions (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING', [userId]);
    const locked = await tx.query<{ version: number | string; aor: string }>(
      `SELECT v.version, u.aor FROM contact_list_versions v JOIN users u ON u.id = v.user_id
        WHERE v.user_id = $1 FOR UPDATE OF v`,
      [userId],
    );
    if (locked.rows.length === 0) throw new Error(`no user with id ${userId}`);
    const owner = { id: userId, aor: locked.rows[0].aor };
    const current = (await getContactLists(tx, [owner])).get(userId)!;
    const next = canonical(compute(current));
    const changed = !sameContactListContent(current, next);
    const fileVersion = source && sameContactListContent(next, canonical(source)) ? source.version : 0;
    const version = changed ? Math.max(current.version + 1, fileVersion) : Math.max(current.version, fileVersion);
    const result: ContactListChange = { changed, version, ...countChanges(current, next) };
    if (changed) await storeContents(tx, userId, next);
    if (version !== current.version) {
      await tx.query('UPDATE contact_list_versions SET version = $2, updated_at = now() WHERE user_id = $1', [userId, version]);
    }
    if ((changed || version !== current.version) && (options.notify ?? true)) {
      await tx.query('SELECT pg_notify($1, $2)', [CONTACT_LISTS_CHANNEL, owner.aor]);
    }
    return result;
  });
}

/** Drops group references to groups the list does not declare, orders rules: the stored form. */
function canonical(list: ContactList): ContactList {
  const copy: ContactList = {
    ...list,
    groups: list.groups.map((g) => ({ name: g.name })),
    contacts: list.contacts.map((c) => ({ uri: c.uri, displayName: c.displayName, subscribed: c.subscribed, groups: [...new Set(c.groups)] })),
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

/** Rewrites the three tables of one list; positions follow array order. */
async function storeContents(tx: Sql, userId: number, list: ContactList): Promise<void> {
  await tx.query('DELETE FROM contact_groups WHERE user_id = $1', [userId]);
  await tx.query('DELETE FROM contacts WHERE user_id = $1', [userId]);
  await tx.query('DELETE FROM access_rules WHERE user_id = $1', [userId]);
  if (list.groups.length > 0) {
    await tx.query(
      `INSERT INTO contact_groups (user_id, name, position)
       SELECT $1, g.name, (g.ord - 1)::int FROM unnest($2::text[]) WITH ORDINALITY AS g(name, ord)`,
      [userId, list.groups.map((g) => g.name)],
    );
  }
  if (list.contacts.length > 0) {
    // JSON carries each contact's groups array, which a text[][] parameter could not (ragged).
    await tx.query(
      `INSERT INTO contacts (user_id, uri, display_name, subscribed, groups, position)
       SELECT $1, e.value->>'u', e.value->>'d', (e.value->>'s')::boolean,
              ARRAY(SELECT json_array_elements_text(e.value->'g')), (e.ord - 1)::int
         FROM json_array_elements($2::json) WITH ORDINALITY AS e(value, ord)`,
      [userId, JSON.stringify(list.contacts.map((c) => ({ u: c.uri, d: c.displayName, s: c.subscribed, g: c.groups })))],
    );
  }
  if (list.accessRules.length > 0) {
    await tx.query(
      `INSERT INTO access_rules (user_id, pattern, action)
       SELECT $1, r.pattern, r.action FROM unnest($2::text[], $3::text[]) AS r(pattern, action)`,
      [userId, list.accessRules.map((r) => r.pattern), list.accessRules.map((r) => r.action)],
    );
  }
}
