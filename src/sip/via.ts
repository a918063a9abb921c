import { isIpv6Address } from './host.js';
import { isTokenChar, skipWhitespace } from './lexer.js';
import { formatParams, parseParams } from './params.js';

/**
 * One Via value: sent-protocol LWS sent-by *( SEMI via-params ) (RFC 3261 20.42, 25.1).
 * LWS is allowed around "/", ":" and ";" and "=", and is dropped by parsing.
 */
export interface Via {
  /** Normalised "SIP/2.0/TCP". */
  protocol: string;
  /** Upper-cased transport token: 'UDP', 'TCP', 'TLS', 'SCTP', 'WS', 'WSS' or any extension. */
  transport: string;
  /** Host name or address; IPv6 references keep their brackets. */
  host: string;
  port?: number;
  /** All parameters, names lower-cased, values as written (branch, received, rport included). */
  params: Record<string, string | null>;
  branch?: string;
  /**
   * As written. RFC 3261 25.1 gives it without brackets (IPv6address), and that is how this
   * server writes it; RFC 5118 4.5 has both spellings accepted, so compare with `hostKey`.
   */
  received?: string;
  /** RFC 3581: null when present without a value (a request asking for rport). */
  rport?: number | null;
}

/** The RFC 3261 8.1.1.7 magic cookie that marks a globally unique branch. */
export const BRANCH_MAGIC_COOKIE = 'z9hG4bK';

/** Transport as written -> [upper-cased transport, sent-protocol], shared strings for the hot path. */
const COMMON_PROTOCOLS = new Map<string, [string, string]>();
for (const t of ['UDP', 'TCP', 'TLS', 'WS', 'WSS', 'SCTP']) {
  COMMON_PROTOCOLS.set(t, [t, `SIP/2.0/${t}`]);
  COMMON_PROTOCOLS.set(t.toLowerCase(), [t, `SIP/2.0/${t}`]);
}

/** Parses one Via value (not a comma-joined list); undefined on any syntax error. */
export function parseVia(text: string): Via | undefined {
  const len = text.length;
  let i = skipWhitespace(text, 0);
  let protocol: string;
  let transport: string;
  if (text.startsWith('SIP/2.0/', i) && isTokenChar(text.charCodeAt(i + 8))) {
    // The spelling of nearly every Via: no LWS inside sent-protocol.
    const start = i + 8;
    i = start;
    while (i < len && isTokenChar(text.charCodeAt(i))) i++;
    const common = COMMON_PROTOCOLS.get(text.slice(start, i));
    transport = common?.[0] ?? text.slice(start, i).toUpperCase();
    protocol = common?.[1] ?? `SIP/2.0/${transport}`;
    i = skipWhitespace(text, i);
  } else {
    const parts: string[] = [];
    for (let part = 0; part < 3; part++) {
      if (part > 0) {
        if (text.charCodeAt(i) !== 47) return undefined;
        i = skipWhitespace(text, i + 1);
      }
      const start = i;
      while (i < len && isTokenChar(text.charCodeAt(i))) i++;
      if (i === start) return undefined;
      parts.push(text.slice(start, i).toUpperCase());
      i = skipWhitespace(text, i);
    }
    transport = parts[2];
    protocol = `${parts[0]}/${parts[1]}/${transport}`;
  }
  const hostStart = i;
  let host: string;
  if (text.charCodeAt(i) === 91) {
    const close = text.indexOf(']', i);
    if (close < 0 || !isIpv6Address(text.slice(i + 1, close))) return undefined;
    i = close + 1;
    host = text.slice(hostStart, i);
  } else {
    while (i < len && isHostChar(text.charCodeAt(i))) i++;
    host = text.slice(hostStart, i);
  }
  if (host.length === 0) return undefined;
  // sent-protocol and sent-by are separated by LWS: "SIP/2.0/UDPhost" is not a Via.
  if (hostStart > 0 && !isWs(text.charCodeAt(hostStart - 1))) return undefined;
  i = skipWhitespace(text, i);
  let port: number | undefined;
  if (i < len && text.charCodeAt(i) === 58) {
    i = skipWhitespace(text, i + 1);
    const portStart = i;
    while (i < len && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
    if (i === portStart || i - portStart > 5) return undefined;
    port = Number(text.slice(portStart, i));
    if (port > 65535) return undefined;
  }
  const parsed = parseParams(text, i);
  if (parsed === undefined || parsed.end !== len) return undefined;
  const params = parsed.params;
  const via: Via = { protocol, transport, host, params };
  if (port !== undefined) via.port = port;
  const branch = params.branch;
  if (branch !== undefined) {
    if (branch === null) return undefined;
    via.branch = branch;
  }
  const received = params.received;
  if (received !== undefined) {
    if (received === null) return undefined;
    via.received = received;
  }
  const rport = params.rport;
  if (rport !== undefined) {
    if (rport === null) {
      via.rport = null;
    } else {
      if (!/^\d{1,5}$/.test(rport) || Number(rport) > 65535) return undefined;
      via.rport = Number(rport);
    }
  }
  return via;
}

function isWs(c: number): boolean {
  return c === 32 || c === 9;
}

function isHostChar(c: number): boolean {
  const lower = c | 0x20;
  return (lower >= 97 && lower <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95;
}

/**
 * Formats a Via value. branch, received and rport fields override the same names in params,
 * so a proxy can set `via.received = ...; via.rport = 5060` and format (RFC 3581 4).
 */
export function formatVia(v: Via): string {
  let out = `${v.protocol || `SIP/2.0/${v.transport}`} ${v.host}`;
  if (v.port !== undefined) out += `:${v.port}`;
  const params: Record<string, string | null> = { ...v.params };
  if (v.branch !== undefined) params.branch = v.branch;
  if (v.received !== undefined) params.received = v.received;
  if (v.rport !== undefined) params.rport = v.rport === null ? null : String(v.rport);
  return out + formatParams(params);
}

/**
 * True when the branch marks an RFC 3261 transaction id: it starts with the magic cookie and
 * carries something after it (a bare cookie identifies nothing).
 */
export function hasRfc3261Branch(v: Via): boolean {
  const b = v.branch;
  return b !== undefined && b.length > BRANCH_MAGIC_COOKIE.length && b.startsWith(BRANCH_MAGIC_COOKIE);
}
