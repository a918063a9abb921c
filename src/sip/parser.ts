import { isAscii, isUtf8 } from 'node:buffer';
import { canonicalHeaderName, matchKnownHeaderName } from './headers.js';
import { isDigits, isToken } from './lexer.js';
import { ReceivedHeader, type SipHeader, SipMessage } from './message.js';
import { uriScheme } from './uri.js';

/** What a failed parse found of the headers an error response needs (RFC 3261 8.2.6). */
export interface PartialMessage {
  isRequest: boolean;
  method?: string;
  uri?: string;
  /** The Via, From, To, Call-ID and CSeq headers that were found, in message order. */
  headers: SipHeader[];
}

export interface ParseError {
  ok: false;
  /** The status to answer with: 400, 413, 416 or 505. Never answer a response or an ACK. */
  status: number;
  /** A specific reason phrase, e.g. "Bad Request - Missing Call-ID". */
  reason: string;
  partial?: PartialMessage;
}

export type ParseResult = { ok: true; message: SipMessage } | ParseError;

export interface ParseOptions {
  /** Largest whole message accepted (default 65535, the largest UDP datagram). */
  maxMessageSize?: number;
  /** Largest header section accepted (default 32768). */
  maxHeaderSize?: number;
}

export const DEFAULT_MAX_MESSAGE_SIZE = 65535;
export const DEFAULT_MAX_HEADER_SIZE = 32768;

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
const FOLD = /\r\n[ \t]+/g;
const SIP_VERSION = /^SIP\/\d+\.\d+$/i;
const CONTACT_CHECKED = new Set(['REGISTER', 'INVITE', 'SUBSCRIBE', 'REFER', 'NOTIFY', 'UPDATE']);

/**
 * Parses one complete message: a datagram, a WebSocket message (RFC 7118) or a message
 * framed by StreamFramer. Never throws. The body is a zero-copy view into `buf`.
 *
 * Without Content-Length the body is the rest of the datagram; with it, bytes beyond it are
 * discarded and a shorter body is an error (RFC 3261 18.3).
 */
export function parseMessage(buf: Buffer, opts: ParseOptions = {}): ParseResult {
  const maxMessage = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const maxHeader = opts.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE;
  let start = 0;
  // RFC 3261 7.5: CRLFs before the start-line are ignored.
  while (start + 1 < buf.length && buf[start] === 13 && buf[start + 1] === 10) start += 2;
  if (start >= buf.length) return { ok: false, status: 400, reason: 'Bad Request - Empty Message' };
  const headEnd = buf.indexOf(CRLFCRLF, start);
  if (headEnd < 0) {
    if (buf.length - start > maxHeader) return tooLarge('Header Section Too Large');
    return { ok: false, status: 400, reason: 'Bad Request - Incomplete Header Section' };
  }
  if (headEnd - start > maxHeader) return tooLarge('Header Section Too Large');
  const head = splitHead(buf, start, headEnd);
  if (buf.length > maxMessage) return tooLarge('Message Too Large', head);
  const bodyStart = headEnd + 4;
  const available = buf.length - bodyStart;
  let body: Buffer;
  if (head.contentLengthError !== undefined || head.contentLength === undefined) {
    body = available > 0 ? buf.subarray(bodyStart) : EMPTY;
  } else if (head.contentLength > available) {
    return fail(head, 400, 'Bad Request - Body Shorter Than Content-Length');
  } else {
    body = head.contentLength === 0 ? EMPTY : buf.subarray(bodyStart, bodyStart + head.contentLength);
  }
  return finishMessage(head, body);
}

/** True for a datagram that is only CRLFs: a keep-alive (RFC 5626 4.4.2 uses STUN, older clients CRLF). */
export function isKeepAlive(buf: Buffer): boolean {
  if (buf.length === 0) return false;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 13 && buf[i] !== 10) return false;
  }
  return true;
}

/** @internal The header section split into start line and header lines, before validation. */
export interface SplitHead {
  message: SipMessage;
  contentLength: number | undefined;
  contentLengthError: string | undefined;
  error: { status: number; reason: string } | undefined;
  /** The start line began with "SIP/": never answer it, even when it failed to parse. */
  isResponse: boolean;
}

function tooLarge(what: string, head?: SplitHead): ParseError {
  const error: ParseError = { ok: false, status: 413, reason: `Request Entity Too Large - ${what}` };
  if (head !== undefined) error.partial = partialOf(head);
  return error;
}

/** @internal */
export function fail(head: SplitHead, status: number, reason: string): ParseError {
  return { ok: false, status, reason, partial: partialOf(head) };
}

/**
 * The header section is decoded once: as latin1 when it is ASCII (the common case), as
 * UTF-8 when it is valid UTF-8 (display names, RFC 3261 25.1 TEXT-UTF8), and as latin1
 * otherwise so that no byte is lost.
 */
function decodeHead(buf: Buffer, start: number, end: number): string {
  const view = buf.subarray(start, end);
  if (isAscii(view)) return buf.toString('latin1', start, end);
  if (isUtf8(view)) return buf.toString('utf8', start, end);
  return buf.toString('latin1', start, end);
}

/**
 * @internal Splits the header section [start, end) (without the final CRLFCRLF) into start
 * line and headers. It does not stop at the first error, so Content-Length (needed to stay
 * in sync on a stream) and the headers for an error response are found whenever possible.
 */
export function splitHead(buf: Buffer, start: number, end: number): SplitHead {
  const message = new SipMessage();
  const result: SplitHead = {
    message,
    contentLength: undefined,
    contentLengthError: undefined,
    error: undefined,
    isResponse: false,
  };
  if (hasBareNul(buf, start, end))
    result.error = { status: 400, reason: 'Bad Request - NUL Byte In Headers' };
  const text = decodeHead(buf, start, end);
  const len = text.length;
  if (result.error === undefined && hasBareLineBreak(text)) {
    result.error = { status: 400, reason: 'Bad Request - Bare CR or LF' };
  }
  let eol = text.indexOf('\r\n');
  if (eol < 0) eol = len;
  result.isResponse = text.startsWith('SIP/');
  const startError = parseStartLine(text.slice(0, eol), message);
  if (startError !== undefined && result.error === undefined) result.error = startError;
  const headers = message.headers;
  let pos = eol + 2;
  while (pos < len) {
    const first = text.charCodeAt(pos);
    let lineEnd = text.indexOf('\r\n', pos);
    if (lineEnd < 0) lineEnd = len;
    if (first === 32 || first === 9) {
      // A continuation line right after the start line: the start line cannot be folded.
      result.error ??= { status: 400, reason: 'Bad Request - Malformed Start Line' };
      pos = lineEnd + 2;
      continue;
    }
    let folded = false;
    while (lineEnd < len) {
      const next = text.charCodeAt(lineEnd + 2);
      if (next !== 32 && next !== 9) break;
      folded = true;
      const nextEnd = text.indexOf('\r\n', lineEnd + 2);
      lineEnd = nextEnd < 0 ? len : nextEnd;
    }
    const lineStart = pos;
    const raw = text.slice(pos, lineEnd);
    pos = lineEnd + 2;
    const colon = raw.indexOf(':');
    if (colon < 0) {
      result.error ??= { status: 400, reason: 'Bad Request - Header Without Colon' };
      continue;
    }
    // HCOLON = *( SP / HTAB ) ":" SWS (RFC 3261 25.1)
    let nameEnd = colon;
    while (nameEnd > 0 && (raw.charCodeAt(nameEnd - 1) === 32 || raw.charCodeAt(nameEnd - 1) === 9))
      nameEnd--;
    let name = matchKnownHeaderName(raw, nameEnd);
    if (name === undefined) {
      const rawName = raw.slice(0, nameEnd);
      if (!isToken(rawName)) {
        result.error ??= { status: 400, reason: 'Bad Request - Malformed Header Name' };
        continue;
      }
      name = canonicalHeaderName(rawName);
    }
    // The value is cut from the section's text once, already trimmed (a slice and then a
    // trim of it were two strings per header, on every message).
    let valueStart = lineStart + colon + 1;
    let valueEnd = lineEnd;
    while (valueStart < valueEnd && isAsciiSpace(text.charCodeAt(valueStart))) valueStart++;
    while (valueEnd > valueStart && isAsciiSpace(text.charCodeAt(valueEnd - 1))) valueEnd--;
    let value = text.slice(valueStart, valueEnd);
    // Folds, and the rare value that starts or ends with a non-ASCII character (which trim()
    // may also take off), go the long way.
    if (
      folded ||
      (value.length > 0 && (value.charCodeAt(0) > 127 || value.charCodeAt(value.length - 1) > 127))
    )
      value = value.replace(FOLD, ' ').trim();
    headers.push(new ReceivedHeader(name, value, raw, name, value));
    if (name === 'content-length') {
      // RFC 3261 20.14: Content-Length = 1*DIGIT; "-999" or "abc" cannot be trusted.
      if (!isDigits(value) || value.length > 10) {
        result.contentLengthError ??= 'Bad Request - Malformed Content-Length';
      } else {
        const n = Number(value);
        if (result.contentLength !== undefined && result.contentLength !== n) {
          result.contentLengthError ??= 'Bad Request - Conflicting Content-Length';
        }
        result.contentLength = n;
      }
    }
  }
  return result;
}

/** The ASCII characters String.prototype.trim takes off (tab, line breaks, VT, FF, space). */
function isAsciiSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/** NUL is only legal escaped as a quoted-pair inside a quoted string (RFC 3261 25.1; RFC 4475 intmeth). */
function hasBareNul(buf: Buffer, start: number, end: number): boolean {
  let p = buf.indexOf(0, start);
  while (p >= 0 && p < end) {
    if (p === start || buf[p - 1] !== 0x5c) return true;
    p = buf.indexOf(0, p + 1);
  }
  return false;
}

function hasBareLineBreak(text: string): boolean {
  let p = text.indexOf('\n');
  while (p >= 0) {
    if (p === 0 || text.charCodeAt(p - 1) !== 13) return true;
    p = text.indexOf('\n', p + 1);
  }
  p = text.indexOf('\r');
  while (p >= 0) {
    if (text.charCodeAt(p + 1) !== 10) return true;
    p = text.indexOf('\r', p + 1);
  }
  return false;
}

/**
 * Request-Line = Method SP Request-URI SP SIP-Version; Status-Line = SIP-Version SP
 * Status-Code SP Reason-Phrase (RFC 3261 7.1, 7.2). Exactly one SP between elements.
 */
function parseStartLine(line: string, message: SipMessage): { status: number; reason: string } | undefined {
  if (line.length > 4 && line.charCodeAt(0) === 83 && line.startsWith('SIP/')) {
    const sp = line.indexOf(' ');
    if (sp < 0) return { status: 400, reason: 'Bad Request - Malformed Status Line' };
    const version = line.slice(0, sp);
    const code = line.slice(sp + 1, sp + 4);
    const after = line.charCodeAt(sp + 4);
    if (!isDigits(code) || code.length !== 3 || (line.length > sp + 4 && after !== 32)) {
      return { status: 400, reason: 'Bad Request - Malformed Status Code' };
    }
    const status = Number(code);
    if (status < 100 || status > 699) return { status: 400, reason: 'Bad Request - Malformed Status Code' };
    message.status = status;
    message.reason = line.length > sp + 5 ? line.slice(sp + 5) : '';
    message.receivedStartLine = { line, method: '', uri: '', status, reason: message.reason };
    if (version !== 'SIP/2.0' && version.toUpperCase() !== 'SIP/2.0') return versionError(version);
    return undefined;
  }
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 < 0 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 < 0) return { status: 400, reason: 'Bad Request - Malformed Request Line' };
  const method = line.slice(0, sp1);
  const uri = line.slice(sp1 + 1, sp2);
  const version = line.slice(sp2 + 1);
  if (!isToken(method)) return { status: 400, reason: 'Bad Request - Malformed Method' };
  message.method = method;
  // RFC 4475 3.1.2.8-3.1.2.10 (lwsruri, lwsstart, trws): no extra SP anywhere in the line.
  if (uri.length === 0 || version.indexOf(' ') >= 0) {
    return { status: 400, reason: 'Bad Request - Malformed Request Line' };
  }
  message.uri = uri;
  message.receivedStartLine = { line, method, uri, status: 0, reason: '' };
  if (version !== 'SIP/2.0' && version.toUpperCase() !== 'SIP/2.0') return versionError(version);
  return undefined;
}

function versionError(version: string): { status: number; reason: string } {
  // RFC 3261 8.2.2 ... 21.5.7: a well-formed but other version gets 505.
  if (SIP_VERSION.test(version)) return { status: 505, reason: 'Version Not Supported' };
  return { status: 400, reason: 'Bad Request - Malformed SIP Version' };
}

/**
 * @internal Attaches the body and checks what every element relies on (RFC 3261 8.1.1,
 * 8.2.2): mandatory headers present and well-formed, CSeq method equal to the request
 * method, a supported request-URI scheme. Other headers stay unparsed until used.
 */
export function finishMessage(head: SplitHead, body: Buffer): ParseResult {
  if (head.error !== undefined) return fail(head, head.error.status, head.error.reason);
  if (head.contentLengthError !== undefined) return fail(head, 400, head.contentLengthError);
  const m = head.message;
  m.body = body;
  let via: string | undefined;
  let from: string | undefined;
  let to: string | undefined;
  let callId: string | undefined;
  let cseq: string | undefined;
  let maxForwards = false;
  let date: string | undefined;
  let contact = false;
  let duplicate: string | undefined;
  for (const h of m.headers) {
    switch (h.name) {
      case 'via':
        via ??= h.value;
        break;
      case 'from':
        if (from !== undefined) duplicate ??= 'From';
        from = h.value;
        break;
      case 'to':
        if (to !== undefined) duplicate ??= 'To';
        to = h.value;
        break;
      case 'call-id':
        if (callId !== undefined) duplicate ??= 'Call-ID';
        callId = h.value;
        break;
      case 'cseq':
        if (cseq !== undefined) duplicate ??= 'CSeq';
        cseq = h.value;
        break;
      case 'max-forwards':
        if (maxForwards) duplicate ??= 'Max-Forwards';
        maxForwards = true;
        break;
      case 'date':
        date ??= h.value;
        break;
      case 'contact':
        contact = true;
        break;
    }
  }
  if (via === undefined) return fail(head, 400, 'Bad Request - Missing Via');
  if (from === undefined) return fail(head, 400, 'Bad Request - Missing From');
  if (to === undefined) return fail(head, 400, 'Bad Request - Missing To');
  if (callId === undefined || callId.length === 0) return fail(head, 400, 'Bad Request - Missing Call-ID');
  if (cseq === undefined) return fail(head, 400, 'Bad Request - Missing CSeq');
  // RFC 3261 7.3.1: these headers take a single value; two copies (RFC 4475 multi01)
  // would let two elements act on different ones.
  if (duplicate !== undefined || callId.indexOf(',') >= 0) {
    return fail(head, 400, `Bad Request - Multiple ${duplicate ?? 'Call-ID'} Values`);
  }
  // callid = word [ "@" word ]: no whitespace.
  if (/[\s]/.test(callId)) return fail(head, 400, 'Bad Request - Malformed Call-ID');
  const parsedCSeq = m.cseq;
  if (parsedCSeq.method === '') return fail(head, 400, 'Bad Request - Malformed CSeq');
  if (m.topVia.host === '') return fail(head, 400, 'Bad Request - Malformed Via');
  if (m.from.uri === '') return fail(head, 400, 'Bad Request - Malformed From');
  if (m.to.uri === '') return fail(head, 400, 'Bad Request - Malformed To');
  // Lenient like Kamailio: Max-Forwards may be absent, but a present one must be valid.
  if (maxForwards && m.maxForwards === undefined)
    return fail(head, 400, 'Bad Request - Malformed Max-Forwards');
  // RFC 3261 20.17: SIP-date is an rfc1123-date, always in GMT (RFC 4475 3.1.2.12 baddate).
  if (date !== undefined && !date.endsWith(' GMT')) return fail(head, 400, 'Bad Request - Malformed Date');
  if (m.status === 0) {
    if (parsedCSeq.method !== m.method) return fail(head, 400, 'Bad Request - CSeq Method Mismatch');
    const scheme = uriScheme(m.uri);
    if (scheme === undefined) return fail(head, 400, 'Bad Request - Malformed Request-URI');
    if (scheme !== 'sip' && scheme !== 'sips' && scheme !== 'tel') {
      return fail(head, 416, 'Unsupported URI Scheme');
    }
    const requestUri = m.requestUri;
    if (requestUri === undefined) return fail(head, 400, 'Bad Request - Malformed Request-URI');
    // RFC 3261 19.1.1 table: headers are not allowed in a Request-URI (RFC 4475 3.1.2.11).
    for (const _ in requestUri.headers) return fail(head, 400, 'Bad Request - Headers In Request-URI');
    // Contacts are checked where an element must act on them: a registrar (RFC 4475 3.1.2.13
    // regbadct) and the dialog-creating requests; a MESSAGE's Contact is never read.
    if (contact && CONTACT_CHECKED.has(m.method) && m.hasMalformedContact()) {
      return fail(head, 400, 'Bad Request - Malformed Contact');
    }
  }
  return { ok: true, message: m };
}

/** The headers an error response copies (RFC 3261 8.2.6.2), from whatever was parsed. */
function partialOf(head: SplitHead): PartialMessage {
  const message = head.message;
  const headers: SipHeader[] = [];
  for (const h of message.headers) {
    if (
      h.name === 'via' ||
      h.name === 'from' ||
      h.name === 'to' ||
      h.name === 'call-id' ||
      h.name === 'cseq'
    ) {
      headers.push(h);
    }
  }
  const partial: PartialMessage = { isRequest: !head.isResponse, headers };
  if (message.method !== '') partial.method = message.method;
  if (message.uri !== '') partial.uri = message.uri;
  return partial;
}
