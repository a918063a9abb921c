import { isAscii } from 'node:buffer';
import { XMLValidator } from 'fast-xml-parser';
import {
  CONTACT_LIST_FORMAT_VERSION,
  CONTACT_LIST_NAMESPACE,
  type ContactList,
  type XmlProblem,
} from './model.js';
import {
  type ContactListLimits,
  DEFAULT_LIMITS,
  findForbiddenMarkup,
  type Origin,
  PositionMap,
  parseUserElement,
} from './xml-parse.js';

/**
 * The document level of the contact-list format: bytes and encoding, the XML declaration,
 * the `<contact-lists>` root, and the split of a (possibly huge) file into `<user>`
 * elements. Files of 100,000 users are read as a stream: the scanner keeps at most one
 * `<user>` element in memory, cutting the text at each `</user>`. A `</user>` hidden in a
 * comment or attribute cannot smuggle anything through: the cut then yields a malformed
 * fragment and the file is refused.
 */
export interface UserFragment {
  text: string;
  origin: Origin;
}

export type ScanStep = { kind: 'user'; fragment: UserFragment } | { kind: 'error'; problem: XmlProblem };

const ROOT_CLOSE = '</contact-lists>';
const USER_CLOSE = '</user>';
const MAX_PROLOG_CHARS = 64 * 1024;

/** Push scanner over decoded text: feed() chunks, then end(). Stops at the first structural problem. */
export class ContactListScanner {
  private buffer = '';
  private origin: Origin = { line: 1, column: 1 };
  private state: 'prolog' | 'body' | 'after-root' | 'failed' = 'prolog';
  private searchFrom = 0;

  constructor(private readonly limits: ContactListLimits = DEFAULT_LIMITS) {}

  get failed(): boolean {
    return this.state === 'failed';
  }

  feed(text: string): ScanStep[] {
    if (this.state === 'failed') return [];
    this.buffer += text;
    const steps: ScanStep[] = [];
    if (this.state === 'prolog' && !this.readProlog(steps, false)) return steps;
    if (this.state === 'body') this.readUsers(steps);
    else if (this.state === 'after-root' && this.buffer.length > MAX_PROLOG_CHARS) {
      this.fail(steps, this.origin, 'unexpected content after the end of <contact-lists>');
    }
    return steps;
  }

  end(): ScanStep[] {
    if (this.state === 'failed') return [];
    const steps: ScanStep[] = [];
    if (this.state === 'prolog' && !this.readProlog(steps, true)) return steps;
    if (this.state === 'body') this.readUsers(steps);
    if (this.failed) return steps;
    const rest = this.buffer;
    const positions = new PositionMap(rest, this.origin);
    const forbidden = findForbiddenMarkup(rest);
    if (forbidden) return this.fail(steps, positions.at(forbidden.index), forbidden.reason);
    // Comments are blanked, not removed, so indexes still match the text.
    const blanked = rest.replace(/<!--[\s\S]*?-->/g, (c) => ' '.repeat(c.length));
    let index = 0;
    if (this.state === 'body') {
      const close = blanked.indexOf(ROOT_CLOSE);
      const openUser = blanked.search(/<user[\s/>]/);
      if (openUser !== -1 && (close === -1 || openUser < close)) {
        return this.fail(
          steps,
          positions.at(openUser),
          'truncated file: this <user> element is never closed',
        );
      }
      if (close === -1) {
        return this.fail(
          steps,
          positions.at(rest.length),
          'truncated file: the document ends before </contact-lists>',
        );
      }
      const junk = blanked.slice(0, close).search(/\S/);
      if (junk !== -1) {
        return this.fail(
          steps,
          positions.at(junk),
          'unexpected content: only <user> elements belong in <contact-lists>',
        );
      }
      index = close + ROOT_CLOSE.length;
    }
    const trailing = blanked.slice(index).search(/\S/);
    if (trailing !== -1) {
      return this.fail(
        steps,
        positions.at(index + trailing),
        'unexpected content after the end of <contact-lists>',
      );
    }
    this.state = 'after-root';
    this.buffer = '';
    return steps;
  }

  private fail(steps: ScanStep[], at: Origin, reason: string): ScanStep[] {
    this.state = 'failed';
    this.buffer = '';
    steps.push({ kind: 'error', problem: { line: at.line, column: at.column, reason } });
    return steps;
  }

  /** Reads up to the end of the root start tag; returns false until it is complete (or on failure). */
  private readProlog(steps: ScanStep[], atEnd: boolean): boolean {
    const text = this.buffer;
    const positions = new PositionMap(text, { line: 1, column: 1 });
    const declaration = /^<\?xml\s[^?]*\?>/.exec(text);
    if (!declaration && text.startsWith('<?xml') && text.includes('?>')) {
      this.fail(steps, { line: 1, column: 1 }, 'malformed XML declaration');
      return false;
    }
    if (declaration) {
      const problem = checkXmlDeclaration(declaration[0]);
      if (problem) {
        this.fail(steps, positions.at(problem.index), problem.reason);
        return false;
      }
    }
    const body = declaration ? declaration[0].length : 0;
    if (!declaration && '<?xml'.startsWith(text.slice(0, 5)) && !atEnd) return false;
    const forbidden = findForbiddenMarkup(text.slice(body));
    if (forbidden) {
      this.fail(steps, positions.at(body + forbidden.index), forbidden.reason);
      return false;
    }
    const root =
      /^(?:\s|<!--[\s\S]*?-->)*<([^\s/>]+)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/.exec(
        text.slice(body),
      );
    if (!root) {
      if (atEnd) {
        const reason =
          text.trim() === ''
            ? 'empty file: no <contact-lists> element'
            : 'truncated or malformed file: no complete <contact-lists> start tag';
        this.fail(steps, positions.at(text.length), reason);
      } else if (text.length > MAX_PROLOG_CHARS) {
        this.fail(
          steps,
          { line: 1, column: 1 },
          `no <contact-lists> start tag in the first ${MAX_PROLOG_CHARS} characters`,
        );
      }
      return false;
    }
    const rootIndex = body + root.index + root[0].lastIndexOf(`<${root[1]}`);
    const rootEnd = body + root[0].length;
    const validation = XMLValidator.validate(
      text.slice(0, rootEnd) + (root[3] ? '' : ROOT_CLOSE.replace('contact-lists', root[1])),
    );
    if (validation !== true) {
      this.fail(
        steps,
        { line: validation.err.line, column: validation.err.col },
        `malformed XML: ${validation.err.msg}`,
      );
      return false;
    }
    const problem = checkRootElement(root[1], root[2], rootIndex + 1 + root[1].length);
    if (problem) {
      this.fail(steps, positions.at(problem.index), problem.reason);
      return false;
    }
    this.origin = positions.at(rootEnd);
    this.buffer = text.slice(rootEnd);
    // <contact-lists/> holds no users: only white space and comments may follow.
    this.state = root[3] ? 'after-root' : 'body';
    return true;
  }

  /**
   * Cuts complete `<user>` elements off the front of the buffer. Between users only white
   * space and comments may appear; `</contact-lists>` and what follows is left for end().
   */
  private readUsers(steps: ScanStep[]): void {
    const buffer = this.buffer;
    const positions = new PositionMap(buffer, this.origin);
    let cursor = 0;
    for (;;) {
      while (cursor < buffer.length && /\s/.test(buffer[cursor])) cursor++;
      if (buffer.startsWith('<!--', cursor)) {
        const close = buffer.indexOf('-->', cursor + 4);
        if (close === -1) break;
        cursor = close + 3;
        continue;
      }
      const rest = buffer.slice(cursor, cursor + 16);
      if (/^<user[\s/>]/.test(rest)) {
        const end = this.findUserEnd(buffer, cursor);
        if (end === -1) break;
        const origin = positions.at(cursor);
        if (end - cursor > this.limits.maxUserElementChars) {
          this.fail(
            steps,
            origin,
            `<user> element is larger than ${this.limits.maxUserElementChars} characters`,
          );
          return;
        }
        steps.push({ kind: 'user', fragment: { text: buffer.slice(cursor, end), origin } });
        cursor = end;
        continue;
      }
      const waiting =
        rest.length < 16 && ['<user ', '</contact-lists>', '<!--'].some((t) => t.startsWith(rest));
      if (waiting || rest.startsWith('</contact-lists')) break;
      this.fail(
        steps,
        positions.at(cursor),
        'unexpected content: only <user> elements belong in <contact-lists>',
      );
      return;
    }
    if (cursor > 0) {
      this.origin = positions.at(cursor);
      this.buffer = buffer.slice(cursor);
      this.searchFrom = Math.max(0, this.searchFrom - cursor);
    }
    if (this.buffer.length > this.limits.maxUserElementChars) {
      const start = this.buffer.search(/<user[\s/>]/);
      const at = new PositionMap(this.buffer, this.origin).at(Math.max(0, start));
      this.fail(steps, at, `<user> element is larger than ${this.limits.maxUserElementChars} characters`);
    }
  }

  /** Index just past the `<user>` element starting at start, or -1 when more text is needed. */
  private findUserEnd(buffer: string, start: number): number {
    let quote = '';
    let index = start + 5;
    for (; index < buffer.length; index++) {
      const c = buffer[index];
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
    }
    if (index >= buffer.length) return -1;
    if (buffer[index - 1] === '/') return index + 1;
    // A `</user>` inside a comment cuts the element short; the malformed piece is refused.
    const close = buffer.indexOf(USER_CLOSE, Math.max(index, this.searchFrom));
    if (close === -1) {
      this.searchFrom = Math.max(index, buffer.length - USER_CLOSE.length);
      return -1;
    }
    this.searchFrom = 0;
    return close + USER_CLOSE.length;
  }
}

function checkXmlDeclaration(declaration: string): { index: number; reason: string } | undefined {
  const version = /\sversion\s*=\s*["']([^"']*)["']/.exec(declaration);
  if (version?.[1] !== '1.0') {
    return { index: 0, reason: 'the XML declaration must say version="1.0"' };
  }
  const encoding = /\sencoding\s*=\s*["']([^"']*)["']/.exec(declaration);
  if (encoding && encoding[1].toLowerCase() !== 'utf-8') {
    return {
      index: encoding.index + 1,
      reason: `encoding "${encoding[1]}" is not supported: contact lists are UTF-8 only`,
    };
  }
  return undefined;
}

function checkRootElement(
  name: string,
  rawAttributes: string,
  offset: number,
): { index: number; reason: string } | undefined {
  if (name !== 'contact-lists') {
    return {
      index: offset - name.length - 1,
      reason: `expected the root element <contact-lists>, found <${name}>`,
    };
  }
  const attributes = new Map<string, { value: string; index: number }>();
  const attribute = /([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
  for (let m = attribute.exec(rawAttributes); m !== null; m = attribute.exec(rawAttributes)) {
    attributes.set(m[1], { value: m[2] ?? m[3], index: offset + m.index });
  }
  for (const [key, { index }] of attributes) {
    if (key !== 'xmlns' && key !== 'format-version')
      return { index, reason: `unknown attribute ${key} on <contact-lists>` };
  }
  const xmlns = attributes.get('xmlns');
  if (!xmlns || xmlns.value !== CONTACT_LIST_NAMESPACE) {
    return {
      index: xmlns?.index ?? offset,
      reason: `<contact-lists> must declare xmlns="${CONTACT_LIST_NAMESPACE}"`,
    };
  }
  const version = attributes.get('format-version');
  if (!version) return { index: offset, reason: '<contact-lists> needs a format-version attribute' };
  if (version.value !== String(CONTACT_LIST_FORMAT_VERSION)) {
    return {
      index: version.index,
      reason: `format-version "${version.value}" is not supported; this Parley reads format-version ${CONTACT_LIST_FORMAT_VERSION}`,
    };
  }
  return undefined;
}

/**
 * XML 1.0 appendix F: a document's first bytes say how it is encoded. Only UTF-8 (with or
 * without its byte order mark) is accepted; returns how many BOM bytes to skip.
 */
export function checkLeadingBytes(bytes: Uint8Array): { skip: number } | { problem: XmlProblem } {
  const b = bytes;
  const at = (reason: string) => ({ problem: { line: 1, column: 1, reason } });
  if (
    b.length >= 4 &&
    ((b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff) ||
      (b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0))
  ) {
    return at('UTF-32 is not supported: contact lists are UTF-8 only');
  }
  if (b.length >= 2 && ((b[0] === 0xfe && b[1] === 0xff) || (b[0] === 0xff && b[1] === 0xfe))) {
    return at('UTF-16 is not supported: contact lists are UTF-8 only');
  }
  if (b.length >= 2 && ((b[0] === 0 && b[1] !== 0) || (b[0] !== 0 && b[1] === 0))) {
    return at('the file looks like UTF-16 without a byte order mark: contact lists are UTF-8 only');
  }
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return { skip: 3 };
  return { skip: 0 };
}

/**
 * A declaration naming another encoding is reported as such, before strict decoding would
 * report the first non-UTF-8 byte with a less helpful message.
 */
function checkDeclaredEncoding(bytes: Uint8Array): XmlProblem | undefined {
  const head = Buffer.from(bytes.subarray(0, 256)).toString('latin1');
  const declaration = /^<\?xml\s[^?]*\?>/.exec(head);
  const problem = declaration ? checkXmlDeclaration(declaration[0]) : undefined;
  return problem ? { line: 1, column: problem.index + 1, reason: problem.reason } : undefined;
}

/**
 * Decodes a byte stream as strict UTF-8 and yields the file's `<user>` elements one by one,
 * or a single error step and nothing after it.
 */
export async function* scanContactListStream(
  source: AsyncIterable<Uint8Array | string>,
  limits: ContactListLimits = DEFAULT_LIMITS,
  maxBytes = Number.POSITIVE_INFINITY,
): AsyncGenerator<ScanStep> {
  const scanner = new ContactListScanner(limits);
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  // Whether everything so far is decoded (no part of a character waits in the decoder).
  let complete = true;
  let first = true;
  let bytes = 0;
  let line = 1;
  let column = 1;
  for await (const raw of source) {
    let chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    bytes += chunk.length;
    if (bytes > maxBytes) {
      yield { kind: 'error', problem: { line, column, reason: `file is larger than ${maxBytes} bytes` } };
      return;
    }
    if (first && chunk.length > 0) {
      first = false;
      const lead = checkLeadingBytes(chunk);
      if ('problem' in lead) {
        yield { kind: 'error', problem: lead.problem };
        return;
      }
      chunk = chunk.subarray(lead.skip);
      const declared = checkDeclaredEncoding(chunk);
      if (declared) {
        yield { kind: 'error', problem: declared };
        return;
      }
    }
    let text: string;
    if (complete && isAscii(chunk)) {
      // ASCII is UTF-8 as it stands: no decoding to do (most files are ASCII throughout).
      text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
    } else {
      try {
        text = decoder.decode(chunk, { stream: true });
      } catch {
        yield { kind: 'error', problem: locateInvalidUtf8(chunk, line, column) };
        return;
      }
    }
    // A chunk ending in an ASCII byte leaves the decoder holding no part of a character.
    complete = chunk.length === 0 ? complete : chunk[chunk.length - 1] < 0x80;
    ({ line, column } = advance(text, line, column));
    for (const step of scanner.feed(text)) {
      yield step;
      if (step.kind === 'error') return;
    }
  }
  try {
    const tail = decoder.decode();
    if (tail) scanner.feed(tail);
  } catch {
    yield {
      kind: 'error',
      problem: { line, column, reason: 'truncated file: it ends inside a UTF-8 character' },
    };
    return;
  }
  if (first) {
    yield {
      kind: 'error',
      problem: { line: 1, column: 1, reason: 'empty file: no <contact-lists> element' },
    };
    return;
  }
  for (const step of scanner.end()) yield step;
}

function advance(text: string, line: number, column: number): Origin {
  const last = text.lastIndexOf('\n');
  if (last === -1) return { line, column: column + text.length };
  let lines = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++;
  return { line: line + lines, column: text.length - last };
}

/**
 * Pinpoints the first invalid byte of a chunk the strict decoder refused: decoding it
 * leniently marks it with U+FFFD (a genuine U+FFFD earlier in the same chunk would shift
 * the reported column, never hide the error).
 */
function locateInvalidUtf8(chunk: Uint8Array, line: number, column: number): XmlProblem {
  const lenient = new TextDecoder('utf-8').decode(chunk);
  const index = lenient.indexOf('\uFFFD');
  const at = advance(lenient.slice(0, Math.max(0, index)), line, column);
  return {
    line: at.line,
    column: at.column,
    reason: 'invalid UTF-8 byte sequence: contact lists are UTF-8 only',
  };
}

/** Collects a small document's lists; for whole files use scanContactListStream. */
export function parseContactListDocument(
  input: string | Uint8Array,
  limits: ContactListLimits = DEFAULT_LIMITS,
): { ok: true; lists: ContactList[] } | { ok: false; errors: XmlProblem[] } {
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
  if (size > limits.maxDocumentBytes) {
    return {
      ok: false,
      errors: [{ line: 1, column: 1, reason: `document is larger than ${limits.maxDocumentBytes} bytes` }],
    };
  }
  let text: string;
  if (typeof input === 'string') {
    text = input.startsWith('\uFEFF') ? input.slice(1) : input;
  } else {
    const lead = checkLeadingBytes(input);
    if ('problem' in lead) return { ok: false, errors: [lead.problem] };
    const declared = checkDeclaredEncoding(input.subarray(lead.skip));
    if (declared) return { ok: false, errors: [declared] };
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(input.subarray(lead.skip));
    } catch {
      return { ok: false, errors: [locateInvalidUtf8(input.subarray(lead.skip), 1, 1)] };
    }
  }
  const scanner = new ContactListScanner(limits);
  const steps = [...scanner.feed(text), ...scanner.end()];
  const lists: ContactList[] = [];
  const errors: XmlProblem[] = [];
  const seen = new Set<string>();
  for (const step of steps) {
    if (step.kind === 'error') {
      errors.push(step.problem);
      continue;
    }
    const parsed = parseUserElement(step.fragment.text, step.fragment.origin, limits);
    if (!parsed.ok) errors.push(...parsed.errors);
    else if (seen.has(parsed.value.user)) {
      errors.push({
        ...step.fragment.origin,
        reason: `user ${parsed.value.user} appears twice in the document`,
      });
    } else {
      seen.add(parsed.value.user);
      lists.push(parsed.value);
    }
    if (errors.length >= limits.maxProblems) break;
  }
  return errors.length > 0 ? { ok: false, errors: errors.slice(0, limits.maxProblems) } : { ok: true, lists };
}

/**
 * One user's list from a document holding exactly one `<user>`: the body of a
 * `parley-contacts` NOTIFY or PUBLISH (application/vnd.parley.contact-list+xml) and of a
 * per-user export file.
 */
export function parseContactListXml(
  input: string | Uint8Array,
  limits: ContactListLimits = DEFAULT_LIMITS,
): { ok: true; list: ContactList } | { ok: false; errors: XmlProblem[] } {
  const parsed = parseContactListDocument(input, limits);
  if (!parsed.ok) return parsed;
  if (parsed.lists.length !== 1) {
    return {
      ok: false,
      errors: [
        { line: 1, column: 1, reason: `expected exactly one <user> element, found ${parsed.lists.length}` },
      ],
    };
  }
  return { ok: true, list: parsed.lists[0] };
}
