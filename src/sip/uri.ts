import { isIpv6Address } from './host.js';
import { addParam, paramName } from './params.js';

/**
 * SIP, SIPS (RFC 3261 19.1, grammar 25.1) and tel (RFC 3966) URIs.
 *
 * The user part is percent-decoded (RFC 3261 19.1.4 compares it unescaped); parameter and
 * header values are kept as written. Parameter names are lower-cased. A tel URI keeps its
 * telephone-subscriber in `host`.
 */
export interface SipUri {
  scheme: 'sip' | 'sips' | 'tel';
  user?: string;
  password?: string;
  /** Host name or address; an IPv6 reference keeps its brackets: "[2001:db8::1]". */
  host: string;
  port?: number;
  params: Record<string, string | null>;
  headers: Record<string, string>;
}

/** The scheme of an absolute URI, lower-cased, or undefined when the text has no valid scheme. */
export function uriScheme(text: string): string | undefined {
  const colon = text.indexOf(':');
  if (colon <= 0) return undefined;
  const first = text.charCodeAt(0) | 0x20;
  if (first < 97 || first > 122) return undefined;
  for (let i = 1; i < colon; i++) {
    const c = text.charCodeAt(i);
    const lower = c | 0x20;
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3261 25.1)
    if (!((lower >= 97 && lower <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) {
      return undefined;
    }
  }
  return text.slice(0, colon).toLowerCase();
}

/** Parses a sip:, sips: or tel: URI; undefined for other schemes or any syntax error. */
export function parseUri(text: string): SipUri | undefined {
  if (!isUriText(text)) return undefined;
  const scheme = uriScheme(text);
  if (scheme === 'sip' || scheme === 'sips') return parseSipUri(text, scheme);
  if (scheme === 'tel') return parseTelUri(text);
  return undefined;
}

/** URIs are ASCII without whitespace, controls, quotes or angle brackets (RFC 3261 25.1). */
function isUriText(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 32 || c >= 127 || c === 34 || c === 60 || c === 62) return false;
  }
  return text.length > 0;
}

function parseSipUri(text: string, scheme: 'sip' | 'sips'): SipUri | undefined {
  const len = text.length;
  let i = scheme.length + 1;
  let user: string | undefined;
  let password: string | undefined;
  // "@" may appear unescaped only as the userinfo delimiter: user, password, params and headers
  // cannot contain it, while the user part may contain ";", "?" and "," (RFC 3261 25.1).
  const at = text.indexOf('@', i);
  if (at >= 0) {
    const userinfo = text.slice(i, at);
    const colon = userinfo.indexOf(':');
    const rawUser = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (rawUser.length === 0) return undefined;
    user = unescapeUriPart(rawUser);
    if (user === undefined) return undefined;
    if (colon >= 0) {
      password = unescapeUriPart(userinfo.slice(colon + 1));
      if (password === undefined) return undefined;
    }
    i = at + 1;
  }
  const hostStart = i;
  let host: string;
  if (text.charCodeAt(i) === 91) {
    const close = text.indexOf(']', i);
    if (close < 0 || !isIpv6Reference(text, i + 1, close)) return undefined;
    i = close + 1;
    host = text.slice(hostStart, i);
  } else {
    while (i < len && isHostChar(text.charCodeAt(i))) i++;
    if (i === hostStart) return undefined;
    host = text.slice(hostStart, i);
  }
  let port: number | undefined;
  if (i < len && text.charCodeAt(i) === 58) {
    const portStart = ++i;
    while (i < len && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
    if (i === portStart || i - portStart > 5) return undefined;
    port = Number(text.slice(portStart, i));
    if (port > 65535) return undefined;
  }
  const params: Record<string, string | null> = {};
  while (i < len && text.charCodeAt(i) === 59) {
    const start = ++i;
    let eq = -1;
    while (i < len) {
      const c = text.charCodeAt(i);
      if (c === 59 || c === 63) break;
      if (c === 61 && eq < 0) eq = i;
      i++;
    }
    const nameEnd = eq < 0 ? i : eq;
    if (nameEnd === start) return undefined;
    const name = paramName(text, start, nameEnd);
    addParam(params, name, eq < 0 ? null : text.slice(eq + 1, i));
  }
  const headers: Record<string, string> = {};
  if (i < len && text.charCodeAt(i) === 63) {
    for (const header of text.slice(i + 1).split('&')) {
      const eq = header.indexOf('=');
      if (eq <= 0) return undefined;
      addParam(headers, header.slice(0, eq), header.slice(eq + 1));
    }
    i = len;
  }
  if (i !== len) return undefined;
  const uri: SipUri = { scheme, host, params, headers };
  if (user !== undefined) uri.user = user;
  if (password !== undefined) uri.password = password;
  if (port !== undefined) uri.port = port;
  return uri;
}

function parseTelUri(text: string): SipUri | undefined {
  const semi = text.indexOf(';', 4);
  const number = semi < 0 ? text.slice(4) : text.slice(4, semi);
  if (number.length === 0) return undefined;
  for (let i = 0; i < number.length; i++) {
    // RFC 3966 3: digits, hex digits of local numbers, "*", "#", "+" and visual separators.
    if (!/[0-9A-Fa-f*#+\-.()pPwW]/.test(number[i])) return undefined;
  }
  const params: Record<string, string | null> = {};
  if (semi >= 0) {
    for (const param of text.slice(semi + 1).split(';')) {
      const eq = param.indexOf('=');
      const name = (eq < 0 ? param : param.slice(0, eq)).toLowerCase();
      if (name.length === 0) return undefined;
      addParam(params, name, eq < 0 ? null : param.slice(eq + 1));
    }
  }
  return { scheme: 'tel', host: number, params, headers: {} };
}

function isHostChar(c: number): boolean {
  const lower = c | 0x20;
  // hostname = alphanum / "-" / "." (RFC 3261 25.1); "_" accepted because deployed DNS uses it.
  return (lower >= 97 && lower <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95;
}

/** IPv6reference = "[" IPv6address "]" (RFC 3261 25.1, RFC 5954); text[start, end) is inside the brackets. */
function isIpv6Reference(text: string, start: number, end: number): boolean {
  return isIpv6Address(text.slice(start, end));
}

/** Decodes %XX escapes (UTF-8 sequences included); undefined on a malformed escape. */
export function unescapeUriPart(text: string): string | undefined {
  if (text.indexOf('%') < 0) return text;
  const bytes: number[] = [];
  let wide = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 37) {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      const byte = Number.parseInt(hex, 16);
      if (byte >= 128) wide = true;
      bytes.push(byte);
      i += 2;
    } else {
      bytes.push(c);
    }
  }
  return wide ? Buffer.from(bytes).toString('utf8') : String.fromCharCode(...bytes);
}

// user = 1*( unreserved / escaped / user-unreserved ), user-unreserved = & = + $ , ; ? /
const USER_SAFE = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/]*$/;
// password = *( unreserved / escaped / & = + $ , )
const PASSWORD_SAFE = /^[A-Za-z0-9\-_.!~*'()&=+$,]*$/;

function escapeUriPart(text: string, safe: RegExp): string {
  if (safe.test(text)) return text;
  let out = '';
  for (const ch of text) {
    if (safe.test(ch)) {
      out += ch;
    } else {
      for (const byte of Buffer.from(ch, 'utf8'))
        out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  }
  return out;
}

/** Formats a URI, escaping the user and password parts where the grammar requires it. */
export function formatUri(uri: SipUri): string {
  let out = `${uri.scheme}:`;
  if (uri.scheme !== 'tel' && uri.user !== undefined) {
    out += escapeUriPart(uri.user, USER_SAFE);
    if (uri.password !== undefined) out += `:${escapeUriPart(uri.password, PASSWORD_SAFE)}`;
    out += '@';
  }
  out += uri.host;
  if (uri.port !== undefined) out += `:${uri.port}`;
  for (const name in uri.params) {
    const value = uri.params[name];
    out += value === null || value === undefined ? `;${name}` : `;${name}=${value}`;
  }
  let sep = '?';
  for (const name in uri.headers) {
    out += `${sep}${name}=${uri.headers[name]}`;
    sep = '&';
  }
  return out;
}

/**
 * The address-of-record key of a URI: "user@host" with the host lower-cased and the user
 * unescaped and otherwise as is (RFC 3261 10.3 step 5, 19.1.4); just the host when there is
 * no user; the number for tel URIs.
 */
export function uriAor(uri: SipUri): string {
  if (uri.scheme === 'tel') return uri.host;
  const host = uri.host.toLowerCase();
  return uri.user === undefined ? host : `${uri.user}@${host}`;
}
