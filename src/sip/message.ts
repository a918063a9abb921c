import { type CSeq, parseCSeq } from './cseq.js';
import { canonicalHeaderName, displayHeaderName, isListHeader } from './headers.js';
import { indexOfListComma, splitCommaList } from './lexer.js';
import { type NameAddr, type ParsedUriSlot, parseNameAddr } from './nameaddr.js';
import { parseUri, type SipUri } from './uri.js';
import { parseVia, type Via } from './via.js';

export type SipMethod = string;

/**
 * One header line. Read-only: responses and clones share their request's header objects
 * (createResponse, SipMessage.clone), so a header is changed by replacing its object
 * (set, append, prepend, remove), which the compiler enforces here.
 */
export interface SipHeader {
  /** Canonical lower-case full name: 'via', 'call-id' (compact forms expanded). */
  readonly name: string;
  /** Unfolded and trimmed value. */
  readonly value: string;
}

/**
 * A header as received. It keeps its original text so that serialization writes it back
 * byte for byte unless its name or value was changed (STYLE 3: no reformatting of untouched
 * headers). Code that adds headers uses plain { name, value } objects.
 */
export class ReceivedHeader implements SipHeader {
  constructor(
    readonly name: string,
    readonly value: string,
    /** The original line(s), folding included, without the final CRLF. */
    readonly raw: string,
    readonly rawName: string,
    readonly rawValue: string,
  ) {}

  get untouched(): boolean {
    return this.value === this.rawValue && this.name === this.rawName;
  }
}

/** The original start line, to write back as received while method/uri/status/reason are unchanged. */
interface ReceivedStartLine {
  line: string;
  method: string;
  uri: string;
  status: number;
  reason: string;
}

const EMPTY_BODY = Buffer.alloc(0);

const MISSING_NAME_ADDR: NameAddr = Object.freeze({ uri: '', params: Object.freeze({}) }) as NameAddr;
const MISSING_VIA: Via = Object.freeze({
  protocol: '',
  transport: '',
  host: '',
  params: Object.freeze({}),
}) as Via;
const MISSING_CSEQ: CSeq = Object.freeze({ seq: 0, method: '' });

/** Scratch for parseNameAddr's URI; read right after each call (single-threaded, no reentry). */
const uriSlot: ParsedUriSlot = { uri: undefined };

interface ParsedContacts {
  valid: NameAddr[];
  /** The URI of each valid contact, index for index (undefined for '*' and non-SIP schemes). */
  uris: (SipUri | undefined)[];
  malformed: boolean;
}

export interface SipMessageInit {
  method?: string;
  uri?: string;
  status?: number;
  reason?: string;
  headers?: SipHeader[];
  body?: Buffer;
}

/**
 * A SIP request or response (RFC 3261 7). Header values are strings; the headers routing
 * needs are parsed on first access and cached against the exact value string they came
 * from, so a set()/remove() or even a direct edit of `headers` is picked up automatically.
 *
 * Accessors never throw: a missing or malformed header yields an empty value (''/0/empty
 * NameAddr/empty Via). parseMessage guarantees Via, From, To, Call-ID and CSeq are present
 * and valid on every message it returns.
 */
export class SipMessage {
  method = '';
  uri = '';
  status = 0;
  reason = '';
  headers: SipHeader[];
  /** Treated as immutable: replace it rather than writing into it (clones share it). */
  body: Buffer;

  /** @internal set by the parser */
  receivedStartLine: ReceivedStartLine | undefined;

  private cseqSrc: string | undefined;
  private cseqVal: CSeq | undefined;
  private fromSrc: string | undefined;
  private fromVal: NameAddr | undefined;
  private fromUriVal: SipUri | undefined;
  private toSrc: string | undefined;
  private toVal: NameAddr | undefined;
  private toUriVal: SipUri | undefined;
  private viaSrc: string | undefined;
  private viaVal: Via | undefined;
  private uriSrc: string | undefined;
  private uriVal: SipUri | undefined;
  private contactSrc: string[] | undefined;
  private contactVal: ParsedContacts | undefined;

  constructor(init: SipMessageInit = {}) {
    this.method = init.method ?? '';
    this.uri = init.uri ?? '';
    this.status = init.status ?? 0;
    this.reason = init.reason ?? '';
    this.headers = init.headers ?? [];
    this.body = init.body ?? EMPTY_BODY;
    this.receivedStartLine = undefined;
  }

  static request(method: string, uri: string, headers: SipHeader[] = [], body?: Buffer): SipMessage {
    return new SipMessage({ method, uri, headers, body });
  }

  static response(status: number, reason: string, headers: SipHeader[] = [], body?: Buffer): SipMessage {
    return new SipMessage({ status, reason, headers, body });
  }

  get isRequest(): boolean {
    return this.status === 0;
  }

  /** First value of a header (names are matched case-insensitively, compact forms accepted). */
  get(name: string): string | undefined {
    const n = canonicalHeaderName(name);
    const headers = this.headers;
    for (let i = 0; i < headers.length; i++) {
      if (headers[i].name === n) return headers[i].value;
    }
    return undefined;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /**
   * Whether getAll(name) would give more than one value (two header lines, or one line with a
   * top-level comma of a list header), without building the list.
   */
  hasSeveral(name: string): boolean {
    const n = canonicalHeaderName(name);
    const split = isListHeader(n);
    let seen = false;
    for (const h of this.headers) {
      if (h.name !== n) continue;
      if (seen || (split && indexOfListComma(h.value) >= 0)) return true;
      seen = true;
    }
    return false;
  }

  /** All values in order; list headers (Via, Contact, Route ...) are split on top-level commas. */
  getAll(name: string): string[] {
    const n = canonicalHeaderName(name);
    const split = isListHeader(n);
    const out: string[] = [];
    for (const h of this.headers) {
      if (h.name !== n) continue;
      if (split) {
        for (const v of splitCommaList(h.value)) out.push(v);
      } else {
        out.push(h.value);
      }
    }
    return out;
  }

  /** Replaces every header of that name by one with this value (at the first one's place). */
  set(name: string, value: string): void {
    const n = canonicalHeaderName(name);
    const header: SipHeader = { name: n, value: cleanValue(value) };
    const headers = this.headers;
    let placed = false;
    let w = 0;
    for (let r = 0; r < headers.length; r++) {
      const h = headers[r];
      if (h.name === n) {
        if (placed) continue;
        headers[w++] = header;
        placed = true;
      } else {
        headers[w++] = h;
      }
    }
    headers.length = w;
    if (!placed) headers.push(header);
  }

  /** Adds a value after the last header of that name, or at the end. */
  append(name: string, value: string): void {
    const n = canonicalHeaderName(name);
    const header: SipHeader = { name: n, value: cleanValue(value) };
    for (let i = this.headers.length - 1; i >= 0; i--) {
      if (this.headers[i].name === n) {
        this.headers.splice(i + 1, 0, header);
        return;
      }
    }
    this.headers.push(header);
  }

  /** Adds a value before the first header of that name (a new topmost Via), or at the top. */
  prepend(name: string, value: string): void {
    const n = canonicalHeaderName(name);
    const header: SipHeader = { name: n, value: cleanValue(value) };
    const index = this.headers.findIndex((h) => h.name === n);
    this.headers.splice(Math.max(index, 0), 0, header);
  }

  remove(name: string): void {
    const n = canonicalHeaderName(name);
    this.headers = this.headers.filter((h) => h.name !== n);
  }

  /**
   * Removes and returns the topmost value: for list headers only the first element of a
   * comma-joined line goes (a proxy popping its own Via, RFC 3261 16.7 step 3).
   */
  removeFirst(name: string): string | undefined {
    const n = canonicalHeaderName(name);
    const index = this.headers.findIndex((h) => h.name === n);
    if (index < 0) return undefined;
    const value = this.headers[index].value;
    if (isListHeader(n)) {
      const comma = indexOfListComma(value);
      if (comma >= 0) {
        const rest = value.slice(comma + 1).trim();
        if (rest.length > 0) {
          this.headers[index] = { name: n, value: rest };
          return value.slice(0, comma).trim();
        }
        this.headers.splice(index, 1);
        return value.slice(0, comma).trim();
      }
    }
    this.headers.splice(index, 1);
    return value;
  }

  get callId(): string {
    return this.get('call-id') ?? '';
  }

  get cseq(): CSeq {
    const src = this.get('cseq');
    if (src === undefined) return MISSING_CSEQ;
    if (src !== this.cseqSrc) {
      this.cseqSrc = src;
      this.cseqVal = parseCSeq(src);
    }
    return this.cseqVal ?? MISSING_CSEQ;
  }

  get from(): NameAddr {
    const src = this.get('from');
    if (src === undefined) return MISSING_NAME_ADDR;
    if (src !== this.fromSrc) {
      this.fromSrc = src;
      this.fromVal = parseNameAddr(src, uriSlot);
      this.fromUriVal = this.fromVal === undefined ? undefined : uriSlot.uri;
    }
    return this.fromVal ?? MISSING_NAME_ADDR;
  }

  /**
   * The From URI parsed (undefined when From is missing or malformed, or its URI is not sip,
   * sips or tel). Parsing From parses its URI anyway, so this costs nothing more.
   */
  get fromUri(): SipUri | undefined {
    return this.from === MISSING_NAME_ADDR ? undefined : this.fromUriVal;
  }

  get to(): NameAddr {
    const src = this.get('to');
    if (src === undefined) return MISSING_NAME_ADDR;
    if (src !== this.toSrc) {
      this.toSrc = src;
      this.toVal = parseNameAddr(src, uriSlot);
      this.toUriVal = this.toVal === undefined ? undefined : uriSlot.uri;
    }
    return this.toVal ?? MISSING_NAME_ADDR;
  }

  /** The To URI parsed, as fromUri. */
  get toUri(): SipUri | undefined {
    return this.to === MISSING_NAME_ADDR ? undefined : this.toUriVal;
  }

  /** The topmost Via value (the first element of the first Via line). */
  get topVia(): Via {
    const line = this.get('via');
    if (line === undefined) return MISSING_VIA;
    if (line !== this.viaSrc) {
      this.viaSrc = line;
      const comma = indexOfListComma(line);
      this.viaVal = parseVia(comma < 0 ? line : line.slice(0, comma));
    }
    return this.viaVal ?? MISSING_VIA;
  }

  /** Every Via value, topmost first; malformed values are skipped. */
  get vias(): Via[] {
    const out: Via[] = [];
    for (const value of this.getAll('via')) {
      const via = parseVia(value);
      if (via !== undefined) out.push(via);
    }
    return out;
  }

  /** The parsed request-URI (undefined for responses and for non sip/sips/tel URIs). */
  get requestUri(): SipUri | undefined {
    if (this.uri !== this.uriSrc) {
      this.uriSrc = this.uri;
      this.uriVal = this.uri === '' ? undefined : parseUri(this.uri);
    }
    return this.uriVal;
  }

  /**
   * Contact values, parsed. The wildcard "Contact: *" of a REGISTER (RFC 3261 10.2.2)
   * appears as { uri: '*' }. Malformed values are skipped (parseMessage rejects them for
   * requests).
   */
  get contacts(): NameAddr[] {
    return this.parsedContacts().valid;
  }

  /**
   * The URIs of `contacts`, index for index, parsed with them: undefined for the wildcard
   * and for schemes other than sip, sips and tel.
   */
  get contactUris(): (SipUri | undefined)[] {
    return this.parsedContacts().uris;
  }

  /**
   * True when a Contact value does not parse. The parser answers 400 for the requests that
   * rely on Contact (REGISTER, dialog-forming ones); other messages may still carry one.
   */
  hasMalformedContact(): boolean {
    return this.parsedContacts().malformed;
  }

  private parsedContacts(): ParsedContacts {
    const values = this.getAll('contact');
    const cached = this.contactSrc;
    if (
      cached !== undefined &&
      this.contactVal !== undefined &&
      cached.length === values.length &&
      cached.every((v, i) => v === values[i])
    ) {
      return this.contactVal;
    }
    const parsed: ParsedContacts = { valid: [], uris: [], malformed: false };
    for (const value of values) {
      if (value === '*') {
        parsed.valid.push({ uri: '*', params: {} });
        parsed.uris.push(undefined);
        continue;
      }
      const contact = parseNameAddr(value, uriSlot);
      if (contact === undefined) {
        parsed.malformed = true;
        continue;
      }
      parsed.valid.push(contact);
      parsed.uris.push(uriSlot.uri);
    }
    this.contactSrc = values;
    this.contactVal = parsed;
    return parsed;
  }

  /** RFC 3261 20.22: 0-255; undefined when absent or malformed. */
  get maxForwards(): number | undefined {
    const v = this.get('max-forwards');
    // Leading zeros are legal (RFC 4475 3.1.1.1 sends "0068").
    if (v === undefined || !/^\d{1,10}$/.test(v)) return undefined;
    const n = Number(v);
    return n > 255 ? undefined : n;
  }

  /**
   * Expires in seconds; undefined when absent or malformed. RFC 3261 20.19 and 4475 3.1.2.4
   * (scalar02): values beyond 2**32-1 are clamped to it rather than rejected.
   */
  get expires(): number | undefined {
    const v = this.get('expires');
    if (v === undefined || !/^\d+$/.test(v)) return undefined;
    return Math.min(Number(v), 2 ** 32 - 1);
  }

  /** The media type of the body, lower-cased, without parameters ('application/pidf+xml'). */
  get contentType(): string | undefined {
    const v = this.get('content-type');
    if (v === undefined) return undefined;
    const semi = v.indexOf(';');
    const type = (semi < 0 ? v : v.slice(0, semi)).trim().toLowerCase();
    return type.length === 0 ? undefined : type.replace(/\s*\/\s*/, '/');
  }

  /**
   * Serializes the message. Received headers come back as received; a changed or new header
   * is written "Name: value"; Content-Length is always the body's length (RFC 3261 18.3,
   * 20.14), rewritten in place or added after the last header.
   */
  toBuffer(): Buffer {
    let head = this.startLine();
    head += '\r\n';
    const bodyLength = this.body.length;
    let wroteLength = false;
    const headers = this.headers;
    for (let i = 0; i < headers.length; i++) {
      const h = headers[i];
      if (h.name === 'content-length') {
        if (wroteLength) continue;
        wroteLength = true;
        if (h instanceof ReceivedHeader && h.untouched && h.value === String(bodyLength)) {
          head += h.raw;
          head += '\r\n';
        } else {
          head += `Content-Length: ${bodyLength}\r\n`;
        }
        continue;
      }
      if (h instanceof ReceivedHeader && h.untouched) {
        head += h.raw;
      } else {
        head += displayHeaderName(h.name);
        head += ': ';
        head += h.value;
      }
      head += '\r\n';
    }
    if (!wroteLength) head += `Content-Length: ${bodyLength}\r\n`;
    head += '\r\n';
    const headLength = Buffer.byteLength(head, 'utf8');
    const out = Buffer.allocUnsafe(headLength + bodyLength);
    out.write(head, 0, headLength, 'utf8');
    if (bodyLength > 0) this.body.copy(out, headLength);
    return out;
  }

  toString(): string {
    return this.toBuffer().toString('utf8');
  }

  /**
   * A copy whose headers can be changed independently through set(), append(), prepend(),
   * remove() and removeFirst() (the body Buffer is shared). The header objects themselves are
   * shared, not copied (a proxy clones every request it forwards): those methods replace a
   * header object, so change a clone's header through them, never by writing to an object's
   * `value`.
   */
  clone(): SipMessage {
    const copy = new SipMessage({
      method: this.method,
      uri: this.uri,
      status: this.status,
      reason: this.reason,
      body: this.body,
      headers: this.headers.slice(),
    });
    copy.receivedStartLine = this.receivedStartLine;
    return copy;
  }

  private startLine(): string {
    const r = this.receivedStartLine;
    if (
      r !== undefined &&
      r.method === this.method &&
      r.uri === this.uri &&
      r.status === this.status &&
      r.reason === this.reason
    ) {
      return r.line;
    }
    return this.status === 0 ? `${this.method} ${this.uri} SIP/2.0` : `SIP/2.0 ${this.status} ${this.reason}`;
  }
}

/** A header value must stay on its line: CR/LF from callers would inject headers. */
function cleanValue(value: string): string {
  if (value.indexOf('\r') < 0 && value.indexOf('\n') < 0) return value.trim();
  return value.replace(/[\r\n]+[ \t]*/g, ' ').trim();
}
