import { isTokenChar, skipQuotedString, skipWhitespace } from './lexer.js';

/**
 * Header parameters: *( SEMI generic-param ), generic-param = token [ EQUAL gen-value ],
 * gen-value = token / host / quoted-string (RFC 3261 25.1). Names are case-insensitive and
 * stored lower-cased; values are kept as written (a quoted value keeps its quotes) so that
 * formatting gives back what was received. A name without "=" maps to null.
 */
export type Params = Record<string, string | null>;

export interface ParsedParams {
  params: Params;
  /** Index where scanning stopped: text.length, or a top-level comma ending a list element. */
  end: number;
}

/**
 * Parses parameters starting at `start`, which must point at ";" (after optional LWS), a comma,
 * or the end of text. Returns undefined on any grammar violation (empty name, stray characters,
 * unterminated quoted value), so callers can answer 400.
 */
export function parseParams(text: string, start: number): ParsedParams | undefined {
  const params: Params = {};
  let i = skipWhitespace(text, start);
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 44) break;
    if (c !== 59) return undefined;
    i = skipWhitespace(text, i + 1);
    const nameStart = i;
    while (i < text.length && isTokenChar(text.charCodeAt(i))) i++;
    if (i === nameStart) return undefined;
    const name = text.slice(nameStart, i).toLowerCase();
    i = skipWhitespace(text, i);
    let value: string | null = null;
    if (i < text.length && text.charCodeAt(i) === 61) {
      i = skipWhitespace(text, i + 1);
      const valueStart = i;
      if (i < text.length && text.charCodeAt(i) === 34) {
        const end = skipQuotedString(text, i);
        if (end < 0) return undefined;
        i = end;
      } else {
        while (i < text.length && isParamValueChar(text.charCodeAt(i))) i++;
      }
      if (i === valueStart) return undefined;
      value = text.slice(valueStart, i);
      i = skipWhitespace(text, i);
    }
    if (!(name in params)) params[name] = value;
  }
  return { params, end: i };
}

/** token / host characters: everything printable except separators that end a value. */
function isParamValueChar(c: number): boolean {
  if (c <= 32 || c === 127) return false;
  // ; , = " < > end or break the value; "[", "]" and ":" stay allowed for IPv6 hosts.
  return c !== 59 && c !== 44 && c !== 61 && c !== 34 && c !== 60 && c !== 62;
}

/** Formats parameters as ";name=value;flag" in insertion order. */
export function formatParams(params: Params): string {
  let out = '';
  for (const name in params) {
    const value = params[name];
    out += value === null || value === undefined ? `;${name}` : `;${name}=${value}`;
  }
  return out;
}

/** Strips the quotes of a quoted parameter value (e.g. +sip.instance="<urn:uuid:...>"). */
export function unquoteParam(value: string | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (value.length >= 2 && value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34) {
    return value.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  return value;
}
