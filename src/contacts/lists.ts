import {
  type ContactListDecision,
  type ContactListRepository,
  type ContactListRows,
  type ContactListWriteOptions,
  contactListRows,
  orderContactList,
} from '../store/contact-lists.js';
import type { AccessRule, Contact, ContactGroup, ContactList } from './model.js';

/**
 * Editing a user's stored contact list: replace, merge, add or remove a contact, a group or
 * an access rule. What the new list is, and which version it gets, is decided here (pure);
 * the store's ContactListRepository locks, reads and writes the rows, and announces the
 * change on CONTACT_LISTS_CHANNEL. A write that changes nothing leaves the version alone,
 * which makes re-running an import a no-op.
 */

export interface ContactListChange {
  changed: boolean;
  /** Version after the write. */
  version: number;
  contactsAdded: number;
  contactsRemoved: number;
  contactsUpdated: number;
}

export type WriteOptions = ContactListWriteOptions;

/**
 * Makes the stored list exactly `list` (its user field is ignored: the owner is userId).
 * Atomic: readers see the old list or the new one. When the stored list ends up equal to
 * the given one and the given version is higher, the version is taken from it, so a list
 * exported at version 7 and imported into an empty store is at version 7 again.
 */
export function replaceContactList(
  repository: ContactListRepository,
  userId: number,
  list: ContactList,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(repository, userId, () => list, list, options);
}

/**
 * Adds `list` to the stored list without dropping anything: groups and access rules are
 * united, contacts the stored list lacks are appended, and for contacts in both the given
 * display name (when not empty) and subscribed flag win and groups are united.
 */
export function mergeContactList(
  repository: ContactListRepository,
  userId: number,
  list: ContactList,
  options: WriteOptions = {},
): Promise<ContactListChange> {
  return writeContactList(repository, userId, (current) => mergeLists(current, list), list, options);
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
  return orderContactList(merged);
}

/**
 * One kind of edit as a write function (repository, userId, what, options): `edit(what)`
 * gives the new list from the stored one.
 */
function listEdit<T>(edit: (what: T) => (current: ContactList) => ContactList) {
  return (
    repository: ContactListRepository,
    userId: number,
    what: T,
    options: WriteOptions = {},
  ): Promise<ContactListChange> => writeContactList(repository, userId, edit(what), undefined, options);
}

/** Adds a contact or updates it in place (keeping its position). */
export const addContact = listEdit((contact: Contact) => (current) => {
  const groups = [...current.groups];
  for (const name of contact.groups) if (!groups.some((g) => g.name === name)) groups.push({ name });
  const index = current.contacts.findIndex((c) => c.uri === contact.uri);
  const contacts = [...current.contacts];
  if (index === -1) contacts.push(contact);
  else contacts[index] = contact;
  return orderContactList({ ...current, groups, contacts });
});

export const removeContact = listEdit((uri: string) => (current) => ({
  ...current,
  contacts: current.contacts.filter((c) => c.uri !== uri),
}));

export const addGroup = listEdit(
  (name: string) => (current) =>
    current.groups.some((g) => g.name === name)
      ? current
      : { ...current, groups: [...current.groups, { name }] },
);

/** Removes a group and takes its members out of it; the contacts themselves stay. */
export const removeGroup = listEdit((name: string) => (current) => ({
  ...current,
  groups: current.groups.filter((g) => g.name !== name),
  contacts: current.contacts.map((c) => ({ ...c, groups: c.groups.filter((g) => g !== name) })),
}));

// canonical() puts the rules back in pattern order.
export const setAccessRule = listEdit((rule: AccessRule) => (current) => ({
  ...current,
  accessRules: [...current.accessRules.filter((r) => r.pattern !== rule.pattern), rule],
}));

export const removeAccessRule = listEdit((pattern: string) => (current) => ({
  ...current,
  accessRules: current.accessRules.filter((r) => r.pattern !== pattern),
}));

/** Same groups, contacts and rules, in the same order; versions and owner are not compared. */
export function sameContactListContent(a: ContactList, b: ContactList): boolean {
  // Field by field rather than through JSON.stringify: an import compares every list twice,
  // and the strings were most of its garbage.
  if (
    a.groups.length !== b.groups.length ||
    a.contacts.length !== b.contacts.length ||
    a.accessRules.length !== b.accessRules.length
  ) {
    return false;
  }
  for (let i = 0; i < a.groups.length; i++) if (a.groups[i].name !== b.groups[i].name) return false;
  for (let i = 0; i < a.contacts.length; i++) if (!sameContact(a.contacts[i], b.contacts[i])) return false;
  for (let i = 0; i < a.accessRules.length; i++) {
    const [x, y] = [a.accessRules[i], b.accessRules[i]];
    if (x.pattern !== y.pattern || x.action !== y.action) return false;
  }
  return true;
}

function sameContact(a: Contact, b: Contact): boolean {
  if (
    a.uri !== b.uri ||
    a.displayName !== b.displayName ||
    a.subscribed !== b.subscribed ||
    a.groups.length !== b.groups.length
  ) {
    return false;
  }
  for (let i = 0; i < a.groups.length; i++) if (a.groups[i] !== b.groups[i]) return false;
  return true;
}

function writeContactList(
  repository: ContactListRepository,
  userId: number,
  compute: (current: ContactList) => ContactList,
  source: ContactList | undefined,
  options: WriteOptions,
): Promise<ContactListChange> {
  return writeContactListBatch(repository, [{ userId, compute, source }], options).then(
    (changes) => changes[0],
  );
}

export interface ContactListWrite {
  userId: number;
  /** The owner's aor when the caller holds it, so the write need not read users (see the repository). */
  aor?: string;
  /** The new list from the stored one. */
  compute: (current: ContactList) => ContactList;
  /** The list the write came from (a file's), whose version is taken when the result equals it. */
  source?: ContactList;
  /**
   * The source in stored form, prepared beforehand (prepareList; an import's parse workers
   * do it): for a user whose stored list is empty, the write then decides from its sizes
   * and writes its rows without building the list. Only for writes whose compute, given an
   * empty list, gives the source's content (replace, and merge of a parsed list, which
   * holds no duplicates).
   */
  prepared?: PreparedList;
}

/** A list in stored form, prepared before its write: its version, sizes and rows. */
export interface PreparedList {
  version: number;
  groups: number;
  contacts: number;
  rules: number;
  rows: ContactListRows;
}

/**
 * The prepared form of a list as the XML parser returns it (parseUserElement), whose groups,
 * contacts, rules and each contact's groups hold no duplicates and whose contacts' groups
 * are in list order: its stored form is then the list with its rules sorted, done in place
 * (orderContactList), without canonical's copy of every contact (7% of a parse worker's CPU).
 */
export function prepareList(list: ContactList): PreparedList {
  const stored = orderContactList(list);
  return {
    version: list.version,
    groups: stored.groups.length,
    contacts: stored.contacts.length,
    rules: stored.accessRules.length,
    rows: contactListRows(stored),
  };
}

/**
 * A list to write into a user's stored one (replaceContactLists, mergeContactLists). The
 * list may be a getter that builds it on demand: with `prepared`, it is read only for users
 * whose stored list is not empty.
 */
export interface SourceList {
  userId: number;
  aor?: string;
  list: ContactList;
  prepared?: PreparedList;
}

/** Replaces the lists of several users in one transaction: what an import does a batch at a time. */
export function replaceContactLists(
  repository: ContactListRepository,
  lists: SourceList[],
  options: WriteOptions = {},
): Promise<ContactListChange[]> {
  return writeEach(repository, lists, (list) => () => list, options);
}

/** Merges lists into several users' lists in one transaction (see mergeContactList). */
export function mergeContactLists(
  repository: ContactListRepository,
  lists: SourceList[],
  options: WriteOptions = {},
): Promise<ContactListChange[]> {
  return writeEach(repository, lists, (list) => (current) => mergeLists(current, list), options);
}

/** One write a given list, each computed by `edit(list)` and with that list as its source. */
function writeEach(
  repository: ContactListRepository,
  lists: SourceList[],
  edit: (list: ContactList) => (current: ContactList) => ContactList,
  options: WriteOptions,
): Promise<ContactListChange[]> {
  return writeContactListBatch(
    repository,
    lists.map((source) => ({
      userId: source.userId,
      aor: source.aor,
      // Read when the write computes, not now: the source list may be built on demand.
      compute: (current) => edit(source.list)(current),
      get source() {
        return source.list;
      },
      prepared: source.prepared,
    })),
    options,
  );
}

/**
 * Writes several users' lists in one transaction (see ContactListRepository.write): each
 * new list is computed from the locked stored one and put in canonical form; it is written
 * only when it differs, and takes the source's version when it ends up equal to the source.
 */
export function writeContactListBatch(
  repository: ContactListRepository,
  writes: ContactListWrite[],
  options: WriteOptions = {},
): Promise<ContactListChange[]> {
  return repository.write(
    writes.map((write) => ({
      userId: write.userId,
      aor: write.aor,
      decide: (current: ContactList): ContactListDecision<ContactListChange> => {
        if (write.prepared && isEmpty(current)) return preparedDecision(current, write.prepared, write);
        const computed = write.compute(current);
        const next = canonical(computed);
        const isChanged = !sameContactListContent(current, next);
        // A replace computes the source itself, whose canonical form is then next: no second copy to compare.
        const equalsSource =
          write.source !== undefined &&
          (computed === write.source || sameContactListContent(next, canonical(write.source)));
        const fileVersion = equalsSource ? write.source!.version : 0;
        const version = isChanged
          ? Math.max(current.version + 1, fileVersion)
          : Math.max(current.version, fileVersion);
        return {
          next: { ...next, version },
          contentChanged: isChanged,
          report: { changed: isChanged, version, ...countChanges(current, next) },
        };
      },
    })),
    options,
  );
}

function isEmpty(list: ContactList): boolean {
  return list.groups.length === 0 && list.contacts.length === 0 && list.accessRules.length === 0;
}

/**
 * The decision of writeContactListBatch for a user whose stored list is empty, from the
 * source's prepared form alone: the new list is the source's stored form (so it takes the
 * source's version), every contact is added, and its rows are written as prepared. The
 * list itself is built only if the store asks for it (an engine without COPY).
 */
function preparedDecision(
  current: ContactList,
  prepared: PreparedList,
  write: ContactListWrite,
): ContactListDecision<ContactListChange> {
  const changed = prepared.groups + prepared.contacts + prepared.rules > 0;
  const version = changed
    ? Math.max(current.version + 1, prepared.version)
    : Math.max(current.version, prepared.version);
  return {
    get next() {
      return { ...canonical(write.compute(current)), version };
    },
    version,
    rows: prepared.rows,
    contentChanged: changed,
    report: { changed, version, contactsAdded: prepared.contacts, contactsRemoved: 0, contactsUpdated: 0 },
  };
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
  return orderContactList(copy);
}

function countChanges(current: ContactList, next: ContactList) {
  if (current.contacts.length === 0) {
    // An empty stored list (a first import): everything is added, no maps to build.
    return { contactsAdded: next.contacts.length, contactsRemoved: 0, contactsUpdated: 0 };
  }
  const before = new Map(current.contacts.map((c) => [c.uri, c]));
  const after = new Set(next.contacts.map((c) => c.uri));
  let contactsAdded = 0;
  let contactsUpdated = 0;
  for (const contact of next.contacts) {
    const old = before.get(contact.uri);
    if (old === undefined) contactsAdded++;
    else if (!sameContact(old, contact)) contactsUpdated++;
  }
  let contactsRemoved = 0;
  for (const uri of before.keys()) if (!after.has(uri)) contactsRemoved++;
  return { contactsAdded, contactsRemoved, contactsUpdated };
}
