import { CONTACT_LIST_FORMAT_VERSION, CONTACT_LIST_NAMESPACE, type ContactList } from './model.js';

/**
 * Deterministic XML for contact lists: fixed attribute order, two-space indentation, LF
 * line ends, groups and contacts in list order, access rules sorted by pattern. The same
 * list always gives the same bytes, which is what makes export -> import -> export
 * byte-identical and lets checksums in a manifest mean something.
 */
export const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n';

export function documentHeader(): string {
  return `${XML_DECLARATION}<contact-lists xmlns="${CONTACT_LIST_NAMESPACE}" format-version="${CONTACT_LIST_FORMAT_VERSION}">\n`;
}

export const DOCUMENT_FOOTER = '</contact-lists>\n';

/** A whole document holding one user's list: the `parley-contacts` event body and per-user export file. */
export function serializeContactList(list: ContactList): string {
  return documentHeader() + serializeUserElement(list) + DOCUMENT_FOOTER;
}

/** Several lists in one document, in the order given (exports pass them sorted by user). */
export function serializeContactLists(lists: Iterable<ContactList>): string {
  let out = documentHeader();
  for (const list of lists) out += serializeUserElement(list);
  return out + DOCUMENT_FOOTER;
}

/**
 * One `<user>` element, indented for its place under `<contact-lists>`, ending with a newline.
 * Built by appending to one string (an export writes millions of these lines).
 */
export function serializeUserElement(list: ContactList): string {
  const head = `  <user uri="${escapeAttribute(list.user)}" version="${list.version}"`;
  const empty = list.groups.length === 0 && list.contacts.length === 0 && list.accessRules.length === 0;
  if (empty) return `${head}/>\n`;
  let out = `${head}>\n`;
  if (list.groups.length > 0) {
    out += '    <groups>\n';
    for (const group of list.groups) out += `      <group name="${escapeAttribute(group.name)}"/>\n`;
    out += '    </groups>\n';
  }
  if (list.contacts.length > 0) {
    out += '    <contacts>\n';
    for (const contact of list.contacts) {
      out += `      <contact uri="${escapeAttribute(contact.uri)}"`;
      if (contact.displayName !== '') out += ` display-name="${escapeAttribute(contact.displayName)}"`;
      out += contact.subscribed ? ' subscribed="true"' : ' subscribed="false"';
      if (contact.groups.length === 0) {
        out += '/>\n';
        continue;
      }
      out += '>\n';
      for (const group of contact.groups) out += `        <member-of group="${escapeAttribute(group)}"/>\n`;
      out += '      </contact>\n';
    }
    out += '    </contacts>\n';
  }
  if (list.accessRules.length > 0) {
    out += '    <access-list>\n';
    const rules = [...list.accessRules].sort((a, b) => compareCodePoints(a.pattern, b.pattern));
    for (const rule of rules) out += `      <${rule.action} pattern="${escapeAttribute(rule.pattern)}"/>\n`;
    out += '    </access-list>\n';
  }
  return `${out}  </user>\n`;
}

/**
 * XML 1.0 section 3.3.3 normalises literal tab, CR and LF in attribute values to spaces, so
 * they are written as character references to survive a round trip.
 */
export function escapeAttribute(value: string): string {
  // Most values need nothing: testing first spares a replace (and its callbacks) per attribute.
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPED_CHARACTERS, (c) => ATTRIBUTE_ESCAPES[c]) : value;
}

const NEEDS_ESCAPE = /[&<>"\t\n\r]/;
const ESCAPED_CHARACTERS = /[&<>"\t\n\r]/g;

const ATTRIBUTE_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

/** Locale-independent order, the same on every machine and database collation. */
export function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
