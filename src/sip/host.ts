/**
 * IP address literals as SIP writes them (RFC 3261 25.1 as corrected by RFC 5954, which
 * takes IPv6address from RFC 3986 3.2.2), and the comparisons routing needs: an IPv6
 * address has many spellings ("2001:DB8:0::1", "2001:db8::1"), so keys and "is this us?"
 * checks use one canonical text (RFC 5952 4).
 */

/** IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT, each at most 255. */
export function isIpv4Address(text: string): boolean {
  let parts = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || value > 255) return false;
      parts++;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (++digits > 3) return false;
      value = value * 10 + (c - 48);
    } else {
      return false;
    }
  }
  return parts === 4;
}

/**
 * The eight 16-bit groups of an IPv6 address (no brackets), or undefined when the text is
 * not one. RFC 5118 4.10: RFC 3261's original ABNF admitted a third colon before an
 * embedded IPv4 address ("2001:db8:::192.0.2.1"), and an implementation must tolerate
 * it: such a ":::" is read as "::". Nowhere else is a third colon accepted.
 */
export function parseIpv6Address(text: string): number[] | undefined {
  if (text.length < 2 || text.length > 64) return undefined;
  let body = text;
  let tail: number[] = [];
  const lastColon = body.lastIndexOf(':');
  if (lastColon < 0) return undefined;
  const last = body.slice(lastColon + 1);
  if (last.includes('.')) {
    if (!isIpv4Address(last)) return undefined;
    const octets = last.split('.').map(Number);
    tail = [(octets[0] << 8) | octets[1], (octets[2] << 8) | octets[3]];
    body = body.slice(0, lastColon + 1);
    if (body.endsWith(':::')) body = body.slice(0, -1);
    if (!body.endsWith('::')) body = body.slice(0, -1);
  }
  const room = 8 - tail.length;
  const gap = body.indexOf('::');
  let head: number[];
  if (gap < 0) {
    const groups = parseGroups(body);
    if (groups === undefined || groups.length !== room) return undefined;
    head = groups;
  } else {
    if (body.indexOf('::', gap + 1) >= 0) return undefined;
    const left = parseGroups(body.slice(0, gap));
    const right = parseGroups(body.slice(gap + 2));
    // "::" stands for one group of zeros at least.
    if (left === undefined || right === undefined || left.length + right.length > room - 1) return undefined;
    head = [...left, ...new Array<number>(room - left.length - right.length).fill(0), ...right];
  }
  return [...head, ...tail];
}

/** h16 *( ":" h16 ), h16 = 1*4HEXDIG; the empty text is no group. */
function parseGroups(text: string): number[] | undefined {
  if (text === '') return [];
  const groups: number[] = [];
  for (const part of text.split(':')) {
    if (part.length === 0 || part.length > 4 || !/^[0-9A-Fa-f]+$/.test(part)) return undefined;
    groups.push(Number.parseInt(part, 16));
  }
  return groups;
}

export function isIpv6Address(text: string): boolean {
  return parseIpv6Address(text) !== undefined;
}

/**
 * RFC 5952 4 text of an IPv6 address: lower case, no leading zeros, the longest run of two
 * or more zero groups (the first of equals) as "::", and "::ffff:a.b.c.d" for an
 * IPv4-mapped address (RFC 5952 5). It is how Node reports a peer's address, so a host
 * written in a URI finds the connection it names.
 */
export function formatIpv6Address(groups: readonly number[]): string {
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/**
 * A host as written in a URI, Via or configuration, made comparable: brackets dropped, an
 * IPv6 address in its RFC 5952 text, names and IPv4 addresses lower-cased. Two spellings
 * of one address give the same key.
 */
export function hostKey(host: string): string {
  const bare =
    host.charCodeAt(0) === 91 && host.charCodeAt(host.length - 1) === 93 ? host.slice(1, -1) : host;
  if (bare.indexOf(':') < 0) return bare.toLowerCase();
  const groups = parseIpv6Address(bare);
  return groups ? formatIpv6Address(groups) : bare.toLowerCase();
}

/**
 * A host as it goes into a URI or a Via sent-by (RFC 3261 25.1 host): an IPv6 address gets
 * its brackets (IPv6reference), anything else is returned as is.
 */
export function hostReference(host: string): string {
  if (host.indexOf(':') < 0 || host.charCodeAt(0) === 91) return host;
  return `[${host}]`;
}
