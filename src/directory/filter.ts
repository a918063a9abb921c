/**
 * LDAP search filters (RFC 4515). Every value that comes from data or from a user (an
 * alias, an anchor, a watermark) goes through escapeFilterValue before it is placed in a
 * filter, so `*`, `(`, `)`, `\` and NUL can never change a filter's meaning.
 */

/** RFC 4515 section 3: these characters must be written as a backslash and two hex digits. */
export function escapeFilterValue(value: string | Buffer): string {
  if (Buffer.isBuffer(value)) {
    // Binary values (objectGUID) are escaped byte by byte.
    return [...value].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');
  }
  let out = '';
  for (const ch of value) {
    switch (ch) {
      case '*':
        out += '\\2a';
        break;
      case '(':
        out += '\\28';
        break;
      case ')':
        out += '\\29';
        break;
      case '\\':
        out += '\\5c';
        break;
      case '\0':
        out += '\\00';
        break;
      default:
        out += ch;
    }
  }
  return out;
}

const ATTRIBUTE = /^[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*$|^\d+(\.\d+)+$/;

/** An attribute description (RFC 4512 section 2.5): rejects anything that could smuggle filter syntax. */
export function checkAttributeName(name: string): string {
  if (!ATTRIBUTE.test(name)) throw new Error(`invalid LDAP attribute name '${name}'`);
  return name;
}

export function equalityFilter(attribute: string, value: string | Buffer): string {
  return `(${checkAttributeName(attribute)}=${escapeFilterValue(value)})`;
}

export function greaterOrEqualFilter(attribute: string, value: string): string {
  return `(${checkAttributeName(attribute)}>=${escapeFilterValue(value)})`;
}

/** Joins complete filters; a single filter is returned as is. */
export function andFilter(...filters: string[]): string {
  const parts = filters.filter((f) => f.length > 0);
  return parts.length === 1 ? parts[0] : `(&${parts.join('')})`;
}

export function orFilter(...filters: string[]): string {
  const parts = filters.filter((f) => f.length > 0);
  return parts.length === 1 ? parts[0] : `(|${parts.join('')})`;
}

/** RFC 4514 section 2.4: escapes a value for use inside an RDN of a DN string. */
export function escapeDnValue(value: string): string {
  let out = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}
