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

/** One `<user>` element, indented for its place under `<contact-lists>`, ending with a newline. */
export function serializeUserElement(list: ContactList): string {
  const lines: string[] = [];
  const head = `  <user uri="${escapeAttribute(list.user)}" version="${list.version}"`;
  const empty = list.groups.length === 0 && list.contacts.length === 0 && list.accessRules.length === 0;
  if (empty) return `${head}/>\n`;
  lines.push(`${head}>`);
  if (list.groups.length > 0) {
    lines.push('    <groups>');
    for (const group of list.groups) lines.push(`      <group name="${escapeAttribute(group.name)}"/>`);
    lines.push('    </groups>');
  }
  if (list.contacts.length > 0) {
    lines.push('    <contacts>');
    for (const contact of list.contacts) {
      let tag = `      <contact uri="${escapeAttribute(contact.uri)}"`;
      if (contact.displayName !== '') tag += ` display-name="${escapeAttribute(contact.displayName)}"`;
      tag += ` subscribed="${contact.subscribed ? 'true' : 'false'}"`;
      if (contact.groups.length === 0) {
        lines.push(`${tag}/>`);
        continue;
      }
      lines.push(`${tag}>`);
      for (const group of contact.groups)
        lines.push(`        <member-of group="${escapeAttribute(group)}"/>`);
      lines.push('      </contact>');
    }
    lines.push('    </contacts>');
  }
  if (list.accessRules.length > 0) {
    lines.push('    <access-list>');
    const rules = [...list.accessRules].sort((a, b) => compareCodePoints(a.pattern, b.pattern));
    for (const rule of rules)
      lines.push(`      <${rule.action} pattern="${escapeAttribute(rule.pattern)}"/>`);
    lines.push('    </access-list>');
  }
  lines.push('  </user>');
  return `${lines.join('\n')}\n`;
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
