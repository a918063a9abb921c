/**
 * The basic rules of the SIP grammar (RFC 3261 25.1): character classes, linear white
 * space, quoted strings and comma-separated lists. Every header grammar in this folder is
 * a small hand-written scanner over these, because regular expressions per header cost
 * too much on the hot path.
 */

const TOKEN_TABLE = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~") {
  TOKEN_TABLE[c.charCodeAt(0)] = 1;
}

/** RFC 3261 25.1 token character: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~". */
export function isTokenChar(code: number): boolean {
  return code < 128 && TOKEN_TABLE[code] === 1;
}

export function isToken(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 128 || TOKEN_TABLE[c] !== 1) return false;
  }
  return true;
}

/** Index just past the run of token characters starting at i (i itself when there is none). */
export function skipToken(text: string, i: number): number {
  while (i < text.length && isTokenChar(text.charCodeAt(i))) i++;
  return i;
}

export function isWhitespace(code: number): boolean {
  return code === 32 || code === 9 || code === 13 || code === 10;
}

/** Index of the first non-LWS character at or after i (values are unfolded, so LWS is SP/HT). */
export function skipWhitespace(text: string, i: number): number {
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13 && c !== 10) break;
    i++;
  }
  return i;
}

export function isDigits(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * Reads a quoted-string starting at the opening DQUOTE (RFC 3261 25.1: quoted-pair is
 * "\" followed by any char except CR/LF). Returns the unescaped content and the index just
 * past the closing quote, or undefined when the string is not terminated.
 */
export function readQuotedString(text: string, start: number): { value: string; end: number } | undefined {
  let i = start + 1;
  let out = '';
  let runStart = i;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      out += text.slice(runStart, i);
      return { value: out, end: i + 1 };
    }
    if (c === 92) {
      if (i + 1 >= text.length) return undefined;
      const next = text.charCodeAt(i + 1);
      if (next === 13 || next === 10) return undefined;
      out += text.slice(runStart, i);
      out += text[i + 1];
      i += 2;
      runStart = i;
      continue;
    }
    i++;
  }
  return undefined;
}

/** Index just past a quoted-string starting at start, or -1 when unterminated. */
export function skipQuotedString(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const quote = text.indexOf('"', i);
    if (quote < 0) return -1;
    const backslash = text.indexOf('\\', i);
    if (backslash < 0 || backslash > quote) return quote + 1;
    // quoted-pair: the escaped character (possibly a DQUOTE) does not end the string.
    i = backslash + 2;
  }
}

/** Wraps text as a quoted-string, escaping DQUOTE and backslash (RFC 3261 25.1 quoted-pair). */
export function quoteString(text: string): string {
  let needsEscape = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 || c === 92) {
      needsEscape = true;
      break;
    }
  }
  if (!needsEscape) return `"${text}"`;
  return `"${text.replace(/["\\]/g, '\\$&')}"`;
}

/**
 * Splits a header value that carries a comma-separated list (RFC 3261 7.3.1). Commas inside
 * quoted strings and inside <...> do not split. Empty elements are dropped.
 */
export function splitCommaList(value: string): string[] {
  if (value.indexOf(',') < 0) {
    const trimmed = value.trim();
    return trimmed.length === 0 ? [] : [trimmed];
  }
  const out: string[] = [];
  let start = 0;
  let inAngle = false;
  let i = 0;
  while (i < value.length) {
    const c = value.charCodeAt(i);
    if (c === 34) {
      const end = skipQuotedString(value, i);
      if (end < 0) break;
      i = end;
      continue;
    }
    if (c === 60) inAngle = true;
    else if (c === 62) inAngle = false;
    else if (c === 44 && !inAngle) {
      const part = value.slice(start, i).trim();
      if (part.length > 0) out.push(part);
      start = i + 1;
    }
    i++;
  }
  const last = value.slice(start).trim();
  if (last.length > 0) out.push(last);
  return out;
}

/**
 * Index of the first top-level comma (outside quotes and <...>) at or after start, or -1.
 * Used to pop the topmost value off a comma-joined header such as Via.
 */
export function indexOfListComma(value: string, start = 0): number {
  const comma = value.indexOf(',', start);
  if (comma < 0) return -1;
  const quote = value.indexOf('"', start);
  const angle = value.indexOf('<', start);
  if ((quote < 0 || quote > comma) && (angle < 0 || angle > comma)) return comma;
  let inAngle = false;
  let i = start;
  while (i < value.length) {
    const c = value.charCodeAt(i);
    if (c === 34) {
      const end = skipQuotedString(value, i);
      if (end < 0) return -1;
      i = end;
      continue;
    }
    if (c === 60) inAngle = true;
    else if (c === 62) inAngle = false;
    else if (c === 44 && !inAngle) return i;
    i++;
  }
  return -1;
}
