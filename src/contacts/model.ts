import type { ContactList } from '../store/contact-lists.js';

/**
 * The contact list of one user as Parley stores, exports and serves it: groups, contacts
 * and the allow/block list that decides who may watch the user's presence. The same shape
 * is the body of the `parley-contacts` event package and of the XML export format
 * (docs/contact-list-xml.md).
 */
export const CONTACT_LIST_FORMAT_VERSION = 1;
export const CONTACT_LIST_NAMESPACE = 'urn:parley:contact-list:1';
export const CONTACT_LIST_CONTENT_TYPE = 'application/vnd.parley.contact-list+xml';

// The list's shape is the stored one: one declaration, in the store that owns the tables.
export type {
  AccessAction,
  AccessRule,
  Contact,
  ContactGroup,
  ContactList,
} from '../store/contact-lists.js';

/** Where a problem was found in an XML document, 1-based as editors count. */
export interface XmlProblem {
  line: number;
  column: number;
  reason: string;
}

export function uriFromAor(aor: string): string {
  return `sip:${aor}`;
}

export function emptyContactList(user: string): ContactList {
  return { user, version: 0, groups: [], contacts: [], accessRules: [] };
}
