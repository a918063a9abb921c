import { createHash } from 'node:crypto';
import type { ContactList } from '../store/contact-lists.js';
import type { UserAccount } from '../store/users.js';

/**
 * What a wave migration compares between two homes, per user: the account (enabled, display
 * name, directory source, digest secrets of every realm) and the contact list's content
 * (groups, contacts with their groups, allow/block rules; not its version, which each store
 * counts on its own). Equal content gives equal checksums whatever store it was read from:
 * the repositories return lists in their stored order (orderContactList).
 */
export interface UserChecksums {
  account: string;
  contactList: string;
  /** Both together: what the journal records for a copy. */
  all: string;
}

function sha256(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

export function accountChecksum(a: UserAccount): string {
  return sha256([
    a.aor,
    a.enabled,
    a.displayName,
    a.source,
    a.sourceAnchor,
    a.credentials.map((c) => [c.realm, c.ha1Md5, c.ha1Sha256]),
  ]);
}

export function contactListChecksum(list: ContactList): string {
  return sha256([
    list.groups.map((g) => g.name),
    list.contacts.map((c) => [c.uri, c.displayName, c.subscribed, c.groups]),
    list.accessRules.map((r) => [r.pattern, r.action]),
  ]);
}

export function userChecksums(account: UserAccount, list: ContactList): UserChecksums {
  const a = accountChecksum(account);
  const c = contactListChecksum(list);
  return { account: a, contactList: c, all: sha256([a, c]) };
}
