/**
 * The contact list of one user as Parley stores, exports and serves it: groups, contacts
 * and the allow/block list that decides who may watch the user's presence. The same shape
 * is the body of the `parley-contacts` event package and of the XML export format
 * (docs/contact-list-xml.md).
 */
export const CONTACT_LIST_FORMAT_VERSION = 1;
export const CONTACT_LIST_NAMESPACE = 'urn:parley:contact-list:1';
export const CONTACT_LIST_CONTENT_TYPE = 'application/vnd.parley.contact-list+xml';

export interface ContactGroup {
  name: string;
}

export interface Contact {
  /** Normalised SIP URI: sip:bob@example.com (lower-case). */
  uri: string;
  displayName: string;
  /** Whether the owner subscribes to this contact's presence. */
  subscribed: boolean;
  /** Names of groups of the same list, in list order. */
  groups: string[];
}

export type AccessAction = 'allow' | 'block';

export interface AccessRule {
  /** A SIP URI (sip:bob@example.com), a domain (example.com) or '*'. */
  pattern: string;
  action: AccessAction;
}

export interface ContactList {
  /** Owner's SIP URI: sip:alice@example.com. */
  user: string;
  /** Monotonic version of the stored list; 0 when never written. */
  version: number;
  /** Ordered: the position in the array is the display position. */
  groups: ContactGroup[];
  /** Ordered: the position in the array is the display position. */
  contacts: Contact[];
  /** Sorted by pattern; order has no meaning for authorization. */
  accessRules: AccessRule[];
}

/** Where a problem was found in an XML document, 1-based as editors count. */
export interface XmlProblem {
  line: number;
  column: number;
  reason: string;
}

/** `alice@example.com` or `sip:alice@example.com` -> the users.aor form `alice@example.com`. */
export function aorFromUri(uri: string): string {
  return uri
    .trim()
    .replace(/^sips?:/i, '')
    .toLowerCase();
}

export function uriFromAor(aor: string): string {
  return `sip:${aor}`;
}

export function emptyContactList(user: string): ContactList {
  return { user, version: 0, groups: [], contacts: [], accessRules: [] };
}
