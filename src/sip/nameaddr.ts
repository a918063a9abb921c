import { isTokenChar, quoteString, readQuotedString, skipWhitespace } from './lexer.js';
import { formatParams, parseParams } from './params.js';
import { parseUri, type SipUri, uriScheme } from './uri.js';

/**
 * From, To, Contact, Route, Record-Route, Refer-To ... values: ( name-addr / addr-spec )
 * *( SEMI param ) (RFC 3261 20.10, 25.1).
 */
export interface NameAddr {
  /** Unquoted and unescaped; token display names have their LWS collapsed to one space. */
  displayName?: string;
  /** The URI exactly as written (without the angle brackets). */
  uri: string;
  /** Header parameters (after ">" or after a bare addr-spec), names lower-cased. */
  params: Record<string, string | null>;
  tag?: string;
}

/**
 * Receives the URI that parsing a name-addr went through. A sip, sips or tel URI is parsed in
 * full to be validated, so a caller that needs it parsed (SipMessage.fromUri) keeps this one
 * instead of parsing the text again. undefined for other schemes and failed parses.
 */
export interface ParsedUriSlot {
  uri: SipUri | undefined;
}

/** Parses one name-addr or addr-spec value; undefined on any syntax error. */
export function parseNameAddr(text: string, slot?: ParsedUriSlot): NameAddr | undefined {
  if (slot !== undefined) slot.uri = undefined;
  const len = text.length;
  let i = skipWhitespace(text, 0);
  if (i >= len) return undefined;
  let displayName: string | undefined;
  let c = text.charCodeAt(i);
  if (c === 34) {
    const quoted = readQuotedString(text, i);
    if (quoted === undefined) return undefined;
    displayName = quoted.value;
    i = skipWhitespace(text, quoted.end);
    if (i >= len || text.charCodeAt(i) !== 60) return undefined;
  } else if (c !== 60) {
    // Either a token display name before "<" (RFC 3261 25.1 display-name = *(token LWS)),
    // or a bare addr-spec: the URI's ":" is not a token character, so a scan over tokens
    // and LWS that stops on "<" identifies the first form.
    let j = i;
    while (j < len) {
      c = text.charCodeAt(j);
      if (!isTokenChar(c) && c !== 32 && c !== 9) break;
      j++;
    }
    if (j < len && text.charCodeAt(j) === 60) {
      displayName = text
        .slice(i, j)
        .trim()
        .replace(/[ \t]+/g, ' ');
      i = j;
    } else {
      return parseAddrSpec(text, i, slot);
    }
  }
  // name-addr: LAQUOT addr-spec RAQUOT, with no LWS inside the brackets.
  const close = text.indexOf('>', i + 1);
  if (close < 0) return undefined;
  const uri = text.slice(i + 1, close);
  if (!isValidAddrSpec(uri, slot)) return undefined;
  const parsed = parseParams(text, close + 1);
  if (parsed === undefined || parsed.end !== len) return undefined;
  return build(displayName, uri, parsed.params);
}

function parseAddrSpec(text: string, start: number, slot: ParsedUriSlot | undefined): NameAddr | undefined {
  let i = start;
  const len = text.length;
  while (i < len) {
    const c = text.charCodeAt(i);
    if (c === 59 || c === 32 || c === 9) break;
    i++;
  }
  const uri = text.slice(start, i);
  // RFC 3261 20.10: a URI containing a comma, question mark or semicolon must use the
  // name-addr form; in the bare form everything after ";" belongs to the header.
  if (uri.indexOf('?') >= 0 || uri.indexOf(',') >= 0 || !isValidAddrSpec(uri, slot)) return undefined;
  const parsed = parseParams(text, i);
  if (parsed === undefined || parsed.end !== len) return undefined;
  return build(undefined, uri, parsed.params);
}

function isValidAddrSpec(uri: string, slot: ParsedUriSlot | undefined): boolean {
  const scheme = uriScheme(uri);
  if (scheme === undefined) return false;
  if (scheme === 'sip' || scheme === 'sips' || scheme === 'tel') {
    const parsed = parseUri(uri);
    if (slot !== undefined) slot.uri = parsed;
    return parsed !== undefined;
  }
  for (let i = 0; i < uri.length; i++) {
    const c = uri.charCodeAt(i);
    if (c <= 32 || c >= 127 || c === 34 || c === 60 || c === 62) return false;
  }
  return true;
}

function build(
  displayName: string | undefined,
  uri: string,
  params: Record<string, string | null>,
): NameAddr {
  const result: NameAddr = { uri, params };
  if (displayName !== undefined && displayName.length > 0) result.displayName = displayName;
  const tag = params.tag;
  if (tag !== undefined && tag !== null) result.tag = tag;
  return result;
}

/**
 * Formats as `"Display" <uri>;params`. The name-addr form is always used, which is valid for
 * any URI (RFC 3261 20.10). `tag` wins over params.tag when both are set.
 */
export function formatNameAddr(n: NameAddr): string {
  let out = n.displayName !== undefined && n.displayName.length > 0 ? `${quoteString(n.displayName)} ` : '';
  out += `<${n.uri}>`;
  if (n.tag !== undefined && n.params.tag !== n.tag) {
    const params = { ...n.params };
    delete params.tag;
    out += `${formatParams(params)};tag=${n.tag}`;
  } else {
    out += formatParams(n.params);
  }
  return out;
}
