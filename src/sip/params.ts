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
    const name = paramName(text, nameStart, i);
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
    addParam(params, name, value);
  }
  return { params, end: i };
}

/**
 * Parameter names seen on nearly every message. Using the literal (already internalized)
 * string as the object key avoids hashing a fresh slice on the hot path.
 */
const COMMON_NAMES = [
  'tag',
  'branch',
  'rport',
  'received',
  'lr',
  'transport',
  'expires',
  'q',
  'ob',
  'reg-id',
  '+sip.instance',
  'maddr',
  'user',
  'gr',
  'ttl',
  'method',
];
const COMMON_BY_LENGTH: string[][] = [];
for (const name of COMMON_NAMES) {
  COMMON_BY_LENGTH[name.length] ??= [];
  COMMON_BY_LENGTH[name.length].push(name);
}

/** The lower-cased parameter name text[start, end), as a shared string when it is a common one. */
export function paramName(text: string, start: number, end: number): string {
  const candidates = COMMON_BY_LENGTH[end - start];
  if (candidates !== undefined) {
    for (let k = 0; k < candidates.length; k++) {
      if (text.startsWith(candidates[k], start)) return candidates[k];
    }
  }
  return text.slice(start, end).toLowerCase();
}

/**
 * token / host characters: printable ASCII except the separators that end or break a value
 * (; , = " < >); "[", "]" and ":" stay allowed for IPv6 hosts. UTF-8 is tolerated.
 */
const VALUE_TABLE = new Uint8Array(128);
for (let c = 33; c < 127; c++) VALUE_TABLE[c] = 1;
for (const c of ';,="<>') VALUE_TABLE[c.charCodeAt(0)] = 0;

function isParamValueChar(c: number): boolean {
  return c >= 128 || VALUE_TABLE[c] === 1;
}

/**
 * Adds a parameter unless already present (the first occurrence wins). "__proto__" is
 * dropped: as a key of a plain object it would not be stored as data.
 */
export function addParam<V>(params: Record<string, V>, name: string, value: V): void {
  if (name !== '__proto__' && !Object.hasOwn(params, name)) params[name] = value;
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
