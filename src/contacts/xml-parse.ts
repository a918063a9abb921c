import { XMLValidator } from 'fast-xml-parser';
import {
  type AccessAction,
  type AccessRule,
  CONTACT_LIST_NAMESPACE,
  type Contact,
  type ContactGroup,
  type ContactList,
  type XmlProblem,
} from './model.js';

/**
 * Parsing of one `<user>` element of the contact-list format. The document around it (XML
 * declaration, encoding, root element, streaming) is xml-document.ts; this file turns one
 * element's text into a validated ContactList or a list of problems with line and column.
 *
 * A scan for forbidden markup, then a small strict tokenizer for this format's vocabulary, which
 * keeps the position of every element and attribute so semantic errors point at the right
 * place (fast-xml-parser's XMLValidator is asked only to describe a syntax error it found).
 */
export interface ContactListLimits {
  /** Largest single document parseContactListXml accepts (bytes once encoded as UTF-8). */
  maxDocumentBytes: number;
  /** Largest `<user>` element in a streamed file, in characters. */
  maxUserElementChars: number;
  maxAttributeChars: number;
  maxGroups: number;
  maxContacts: number;
  maxAccessRules: number;
  /** Stop collecting problems after this many, so a garbage file gives a short report. */
  maxProblems: number;
}

export const DEFAULT_LIMITS: ContactListLimits = {
  maxDocumentBytes: 4 * 1024 * 1024,
  maxUserElementChars: 4 * 1024 * 1024,
  maxAttributeChars: 1024,
  maxGroups: 1_000,
  maxContacts: 10_000,
  maxAccessRules: 10_000,
  maxProblems: 50,
};

/** Where a fragment starts in its file, so problems carry file positions. */
export interface Origin {
  line: number;
  column: number;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; errors: XmlProblem[] };

/** Maps an index in a fragment to a 1-based line and column in the file it came from. */
export class PositionMap {
  private newlines: number[] | undefined;

  constructor(
    private readonly text: string,
    private readonly origin: Origin = { line: 1, column: 1 },
  ) {}

  at(index: number): Origin {
    if (!this.newlines) {
      this.newlines = [];
      for (let i = this.text.indexOf('\n'); i !== -1; i = this.text.indexOf('\n', i + 1))
        this.newlines.push(i);
    }
    let low = 0;
    let high = this.newlines.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (this.newlines[mid] < index) low = mid + 1;
      else high = mid;
    }
    if (low === 0) return { line: this.origin.line, column: this.origin.column + index };
    return { line: this.origin.line + low, column: index - this.newlines[low - 1] };
  }

  /** Converts a position relative to the fragment's own line 1 into a file position. */
  shift(line: number, column: number): Origin {
    return line === 1
      ? { line: this.origin.line, column: this.origin.column + column - 1 }
      : { line: this.origin.line + line - 1, column };
  }
}

/**
 * Markup this format never needs and that carries the classic XML attacks: a DOCTYPE can
 * declare entities (billion laughs, XXE via SYSTEM identifiers), so any `<!` other than a
 * comment is refused before a parser sees the text, as are processing instructions and
 * entity references other than XML's five predefined ones and character references.
 */
const FORBIDDEN_MARKUP =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what the last class looks for.
  /<!(?!--)|<\?|&(?!(?:lt|gt|amp|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});)|[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

export function findForbiddenMarkup(text: string): { index: number; reason: string } | undefined {
  const match = FORBIDDEN_MARKUP.exec(text);
  if (!match) return undefined;
  const found = match[0];
  let reason: string;
  if (found.startsWith('<!')) {
    const word = /^<!(\[CDATA\[|[A-Za-z]+)/.exec(text.slice(match.index, match.index + 12))?.[1] ?? '';
    reason =
      word === 'DOCTYPE' || word === 'ENTITY'
        ? `<!${word}> is not allowed: document type declarations and entities are refused (entity expansion and external entity attacks)`
        : `markup declaration <!${word}...> is not allowed in a contact list`;
  } else if (found === '<?') {
    reason = 'processing instructions are not allowed here (only the XML declaration, at the very start)';
  } else if (found === '&') {
    reason = 'entity reference not allowed: only &lt; &gt; &amp; &quot; &apos; and character references';
  } else {
    reason = `control character U+${found.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} is not allowed in XML`;
  }
  return { index: match.index, reason };
}

interface Attribute {
  value: string;
  index: number;
}

export interface ElementNode {
  name: string;
  attributes: Map<string, Attribute>;
  children: ElementNode[];
  index: number;
}

class Problems {
  readonly list: XmlProblem[] = [];
  constructor(
    private readonly positions: PositionMap,
    private readonly max: number,
  ) {}
  add(index: number, reason: string): void {
    if (this.list.length >= this.max) return;
    const { line, column } = this.positions.at(index);
    this.list.push({ line, column, reason });
  }
  get full(): boolean {
    return this.list.length >= this.max;
  }
}

/**
 * Checks well-formedness of a fragment holding exactly one element (plus comments and
 * white space around it) and builds its element tree. Text content must be white space:
 * the format keeps all data in attributes.
 *
 * The tokenizer is strict for the subset of XML this format uses (elements, attributes,
 * comments; DOCTYPE, PIs, CDATA and entities are refused before it runs): every character
 * must belong to a token, tags must nest, attributes must not repeat. It walks the text by
 * character code, making no substring but the names and values it keeps (a 100,000-user
 * file is millions of elements: a regular-expression tokenizer made a match and captured
 * strings per token, then read each tag's attributes again). When it finds a syntax error,
 * fast-xml-parser's XMLValidator is asked for its diagnosis of the same text, so messages
 * read like a validator's; running the validator only on failure keeps valid files (the
 * common case) fast.
 */
export function parseElementTree(
  text: string,
  positions: PositionMap,
  limits: ContactListLimits,
): ParseResult<ElementNode> {
  const forbidden = findForbiddenMarkup(text);
  if (forbidden)
    return { ok: false, errors: [{ ...positions.at(forbidden.index), reason: forbidden.reason }] };
  const problems = new Problems(positions, limits.maxProblems);
  const malformed = (index: number, reason: string): ParseResult<ElementNode> => {
    const validation = XMLValidator.validate(text, { allowBooleanAttributes: false });
    if (validation !== true) {
      const { line, column } = positions.shift(validation.err.line, validation.err.col);
      return { ok: false, errors: [{ line, column, reason: `malformed XML: ${validation.err.msg}` }] };
    }
    return { ok: false, errors: [{ ...positions.at(index), reason: `malformed XML: ${reason}` }] };
  };
  const unclosed = (index: number) => malformed(index, 'invalid or unclosed tag');
  const stack: ElementNode[] = [];
  let root: ElementNode | undefined;
  const length = text.length;
  let index = 0;
  while (index < length) {
    const start = index;
    if (text.charCodeAt(index) !== LT) {
      // Text up to the next tag: white space is all this format allows.
      let end = text.indexOf('<', index);
      if (end === -1) end = length;
      index = end;
      let blank = true;
      for (let i = start; i < end; i++) {
        if (!isXmlSpace(text.charCodeAt(i))) {
          blank = false;
          break;
        }
      }
      if (blank) continue;
      const whole = text.slice(start, end);
      if (whole.trim() === '') continue;
      const at = start + whole.search(/\S/);
      if (stack.length === 0) return malformed(at, 'text outside the element');
      problems.add(at, 'unexpected text: this format keeps all data in attributes');
      continue;
    }
    const next = text.charCodeAt(index + 1);
    if (next === BANG) {
      // A comment; "--" may appear only in its closing "-->".
      if (!text.startsWith('<!--', index)) return unclosed(index);
      const dashes = text.indexOf('--', index + 4);
      if (dashes === -1 || text.charCodeAt(dashes + 2) !== GT)
        return malformed(index, 'comment not closed, or "--" inside a comment');
      index = dashes + 3;
      continue;
    }
    if (next === SLASH) {
      const nameStop = nameEnd(text, index + 2, false);
      let i = nameStop;
      while (isXmlSpace(text.charCodeAt(i))) i++;
      if (nameStop === index + 2 || text.charCodeAt(i) !== GT) return unclosed(index);
      const open = stack.pop();
      if (!open || open.name.length !== nameStop - index - 2 || !text.startsWith(open.name, index + 2)) {
        const closing = text.slice(index + 2, nameStop);
        return malformed(
          index,
          open ? `expected </${open.name}>, found </${closing}>` : `</${closing}> was never opened`,
        );
      }
      index = i + 1;
      continue;
    }
    const nameStop = nameEnd(text, index + 1, false);
    if (nameStop === index + 1) return unclosed(index);
    const name = text.slice(index + 1, nameStop);
    const attributes = new Map<string, Attribute>();
    let refused: Set<string> | undefined;
    let selfClosing = false;
    let i = nameStop;
    for (;;) {
      const spaceStart = i;
      while (isXmlSpace(text.charCodeAt(i))) i++;
      const c = text.charCodeAt(i);
      if (c === GT) {
        i++;
        break;
      }
      if (c === SLASH && text.charCodeAt(i + 1) === GT) {
        selfClosing = true;
        i += 2;
        break;
      }
      // An attribute: white space before it, then name = "value" or 'value'.
      const attributeStart = i;
      const attributeStop = nameEnd(text, i, true);
      if (i === spaceStart || attributeStop === attributeStart) return unclosed(index);
      i = attributeStop;
      while (isXmlSpace(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== EQUALS) return unclosed(index);
      i++;
      while (isXmlSpace(text.charCodeAt(i))) i++;
      const quote = text.charCodeAt(i);
      if (quote !== DOUBLE_QUOTE && quote !== SINGLE_QUOTE) return unclosed(index);
      const close = text.indexOf(quote === DOUBLE_QUOTE ? '"' : "'", i + 1);
      if (close === -1) return unclosed(index);
      const attributeName = text.slice(attributeStart, attributeStop);
      if (attributes.has(attributeName) || refused?.has(attributeName))
        return malformed(index, 'an attribute is repeated');
      const value = readAttributeValue(
        attributeName,
        text.slice(i + 1, close),
        attributeStart,
        problems,
        limits,
      );
      if (value === undefined) {
        refused ??= new Set();
        refused.add(attributeName);
      } else attributes.set(attributeName, { value, index: attributeStart });
      i = close + 1;
    }
    index = i;
    const node: ElementNode = { name, attributes, children: [], index: start };
    if (stack.length > 0) stack[stack.length - 1].children.push(node);
    else if (root) return malformed(start, `only one element is allowed here, after <${root.name}>`);
    else root = node;
    if (!selfClosing) stack.push(node);
  }
  if (stack.length > 0)
    return malformed(stack[stack.length - 1].index, `<${stack[stack.length - 1].name}> is not closed`);
  if (!root) problems.add(0, 'no element found');
  if (problems.list.length > 0) return { ok: false, errors: problems.list };
  return { ok: true, value: root! };
}

const LT = 0x3c;
const GT = 0x3e;
const SLASH = 0x2f;
const BANG = 0x21;
const EQUALS = 0x3d;
const DOUBLE_QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;

/** XML 1.0 section 2.3 S: space, tab, CR, LF. */
function isXmlSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

/**
 * Index just past the name starting at start (the start itself when there is none): this
 * format's element names `[A-Za-z_][\w.-]*`, attribute names also with `:` (xmlns:...).
 */
function nameEnd(text: string, start: number, colon: boolean): number {
  const first = text.charCodeAt(start);
  if (!((first >= 0x41 && first <= 0x5a) || (first >= 0x61 && first <= 0x7a) || first === 0x5f)) return start;
  let i = start + 1;
  for (;;) {
    const c = text.charCodeAt(i);
    if (
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x5f ||
      c === 0x2e ||
      (colon && c === 0x3a)
    )
      i++;
    else return i;
  }
}

/** An attribute's value as written (between its quotes), checked and decoded; undefined when refused. */
function readAttributeValue(
  name: string,
  rawValue: string,
  index: number,
  problems: Problems,
  limits: ContactListLimits,
): string | undefined {
  if (rawValue.length > limits.maxAttributeChars) {
    problems.add(
      index,
      `attribute ${name} is ${rawValue.length} characters long; the limit is ${limits.maxAttributeChars}`,
    );
    return undefined;
  }
  if (rawValue.includes('<')) {
    // XML 1.0 section 3.1 (AttValue): a literal '<' is not allowed in an attribute value.
    problems.add(index, `attribute ${name} contains '<': write it as &lt;`);
    return undefined;
  }
  // Most values hold no reference and no literal white space to normalise.
  if (!NEEDS_DECODING.test(rawValue)) return rawValue;
  const value = decodeAttributeValue(rawValue);
  if (value === undefined)
    problems.add(index, `attribute ${name} holds a character reference to a character XML does not allow`);
  return value;
}

const NEEDS_DECODING = /[&\t\n\r]/;

/** XML 1.0 section 3.3.3: references are replaced and literal white space becomes a space. */
function decodeAttributeValue(raw: string): string | undefined {
  let invalid = false;
  const value = raw.replace(
    /&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);|[\t\n\r]/g,
    (whole, ref?: string) => {
      if (ref === undefined) return ' ';
      if (ref.startsWith('#')) {
        const code = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
        if (!isXmlChar(code)) {
          invalid = true;
          return '';
        }
        return String.fromCodePoint(code);
      }
      return PREDEFINED[ref] ?? whole;
    },
  );
  return invalid ? undefined : value;
}

const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** XML 1.0 section 2.2 Char production. */
function isXmlChar(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

/** sip:user@host or sips:user@host, no parameters or headers: a contact is an address of record. */
const SIP_URI = /^sips?:[^\s@<>"';?&=,]+@[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;
const DOMAIN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const MAX_NAME_CHARS = 256;

/** Lower-cases scheme, user and host: addresses of record are compared case-insensitively (users.aor). */
export function normalizeSipUri(value: string): string | undefined {
  const lowered = value.trim().toLowerCase();
  return SIP_URI.test(lowered) ? lowered : undefined;
}

export function normalizeAccessPattern(value: string): string | undefined {
  const lowered = value.trim().toLowerCase();
  if (lowered === '*') return lowered;
  if (lowered.startsWith('sip:') || lowered.startsWith('sips:')) return normalizeSipUri(lowered);
  return DOMAIN.test(lowered) ? lowered : undefined;
}

const SECTION_ORDER = ['groups', 'contacts', 'access-list'];

/**
 * Turns a `<user>` element into a ContactList and checks what XML cannot: URIs, duplicate
 * contacts and groups, references to undeclared groups, limits. Every problem is reported
 * with the position of the element or attribute at fault.
 */
export function parseUserElement(
  text: string,
  origin: Origin = { line: 1, column: 1 },
  limits: ContactListLimits = DEFAULT_LIMITS,
): ParseResult<ContactList> {
  const positions = new PositionMap(text, origin);
  const tree = parseElementTree(text, positions, limits);
  if (!tree.ok) return tree;
  const problems = new Problems(positions, limits.maxProblems);
  const user = tree.value;
  const list: ContactList = { user: '', version: 0, groups: [], contacts: [], accessRules: [] };
  if (user.name !== 'user') {
    problems.add(user.index, `expected <user>, found <${user.name}>`);
    return { ok: false, errors: problems.list };
  }
  checkAttributes(user, ['uri', 'version'], ['uri'], problems);
  const uriAttribute = user.attributes.get('uri');
  if (uriAttribute) {
    const uri = normalizeSipUri(uriAttribute.value);
    if (uri) list.user = `sip:${uri.replace(/^sips?:/, '')}`;
    else
      problems.add(
        uriAttribute.index,
        `user uri "${uriAttribute.value}" is not a SIP address (sip:user@domain)`,
      );
  }
  const versionAttribute = user.attributes.get('version');
  if (versionAttribute) {
    const version = /^[0-9]{1,15}$/.test(versionAttribute.value)
      ? Number(versionAttribute.value)
      : Number.NaN;
    if (Number.isSafeInteger(version)) list.version = version;
    else
      problems.add(
        versionAttribute.index,
        `version "${versionAttribute.value}" is not a non-negative integer`,
      );
  }

  let lastSection = -1;
  const groupNames = new Map<string, number>();
  const contactUris = new Set<string>();
  const patterns = new Set<string>();
  for (const section of user.children) {
    const rank = SECTION_ORDER.indexOf(section.name);
    if (rank === -1) {
      problems.add(
        section.index,
        `unknown element <${section.name}> in <user>; expected groups, contacts or access-list`,
      );
      continue;
    }
    if (rank <= lastSection) {
      problems.add(
        section.index,
        `<${section.name}> is out of place: sections come once each, in the order groups, contacts, access-list`,
      );
      continue;
    }
    lastSection = rank;
    checkAttributes(section, [], [], problems);
    if (section.name === 'groups') readGroups(section, list.groups, groupNames, problems, limits);
    else if (section.name === 'contacts')
      readContacts(section, list.contacts, groupNames, contactUris, problems, limits);
    else readAccessList(section, list.accessRules, patterns, problems, limits);
    if (problems.full) break;
  }
  list.accessRules.sort((a, b) => (a.pattern < b.pattern ? -1 : a.pattern > b.pattern ? 1 : 0));
  if (problems.list.length > 0) return { ok: false, errors: problems.list };
  return { ok: true, value: list };
}

function readGroups(
  section: ElementNode,
  groups: ContactGroup[],
  names: Map<string, number>,
  problems: Problems,
  limits: ContactListLimits,
): void {
  for (const element of section.children) {
    if (element.name !== 'group') {
      problems.add(element.index, `unknown element <${element.name}> in <groups>; expected <group>`);
      continue;
    }
    checkAttributes(element, ['name'], ['name'], problems);
    noChildren(element, problems);
    const name = element.attributes.get('name');
    if (!name) continue;
    if (name.value.trim() === '' || name.value.length > MAX_NAME_CHARS) {
      problems.add(name.index, `group name must be 1 to ${MAX_NAME_CHARS} characters and not blank`);
      continue;
    }
    if (names.has(name.value)) {
      problems.add(name.index, `duplicate group "${name.value}"`);
      continue;
    }
    if (groups.length >= limits.maxGroups) {
      problems.add(element.index, `more than ${limits.maxGroups} groups`);
      return;
    }
    names.set(name.value, groups.length);
    groups.push({ name: name.value });
  }
}

function readContacts(
  section: ElementNode,
  contacts: Contact[],
  groupNames: Map<string, number>,
  uris: Set<string>,
  problems: Problems,
  limits: ContactListLimits,
): void {
  for (const element of section.children) {
    if (element.name !== 'contact') {
      problems.add(element.index, `unknown element <${element.name}> in <contacts>; expected <contact>`);
      continue;
    }
    checkAttributes(element, ['uri', 'display-name', 'subscribed'], ['uri'], problems);
    const uriAttribute = element.attributes.get('uri');
    if (!uriAttribute) continue;
    const uri = normalizeSipUri(uriAttribute.value);
    if (!uri) {
      problems.add(
        uriAttribute.index,
        `contact uri "${uriAttribute.value}" is not a SIP address (sip:user@domain)`,
      );
      continue;
    }
    if (uris.has(uri)) {
      problems.add(uriAttribute.index, `duplicate contact ${uri}`);
      continue;
    }
    if (contacts.length >= limits.maxContacts) {
      problems.add(element.index, `more than ${limits.maxContacts} contacts`);
      return;
    }
    uris.add(uri);
    const displayName = element.attributes.get('display-name');
    if (displayName && displayName.value.length > MAX_NAME_CHARS) {
      problems.add(displayName.index, `display-name is longer than ${MAX_NAME_CHARS} characters`);
    }
    const subscribedAttribute = element.attributes.get('subscribed');
    let subscribed = true;
    if (subscribedAttribute) {
      if (subscribedAttribute.value === 'true' || subscribedAttribute.value === '1') subscribed = true;
      else if (subscribedAttribute.value === 'false' || subscribedAttribute.value === '0') subscribed = false;
      else
        problems.add(
          subscribedAttribute.index,
          `subscribed must be true or false, not "${subscribedAttribute.value}"`,
        );
    }
    const memberOf = new Set<string>();
    for (const child of element.children) {
      if (child.name !== 'member-of') {
        problems.add(child.index, `unknown element <${child.name}> in <contact>; expected <member-of>`);
        continue;
      }
      checkAttributes(child, ['group'], ['group'], problems);
      noChildren(child, problems);
      const group = child.attributes.get('group');
      if (!group) continue;
      if (!groupNames.has(group.value))
        problems.add(group.index, `group "${group.value}" is not declared in <groups>`);
      else if (memberOf.has(group.value))
        problems.add(group.index, `contact is already in group "${group.value}"`);
      else memberOf.add(group.value);
    }
    contacts.push({
      uri,
      displayName: displayName?.value ?? '',
      subscribed,
      // Canonical order (the list's group order) so equal lists serialize to equal bytes.
      groups: [...memberOf].sort((a, b) => groupNames.get(a)! - groupNames.get(b)!),
    });
  }
}

function readAccessList(
  section: ElementNode,
  rules: AccessRule[],
  patterns: Set<string>,
  problems: Problems,
  limits: ContactListLimits,
): void {
  for (const element of section.children) {
    if (element.name !== 'allow' && element.name !== 'block') {
      problems.add(
        element.index,
        `unknown element <${element.name}> in <access-list>; expected <allow> or <block>`,
      );
      continue;
    }
    checkAttributes(element, ['pattern'], ['pattern'], problems);
    noChildren(element, problems);
    const patternAttribute = element.attributes.get('pattern');
    if (!patternAttribute) continue;
    const pattern = normalizeAccessPattern(patternAttribute.value);
    if (!pattern) {
      problems.add(
        patternAttribute.index,
        `pattern "${patternAttribute.value}" is not a SIP address, a domain or *`,
      );
      continue;
    }
    if (patterns.has(pattern)) {
      problems.add(patternAttribute.index, `pattern ${pattern} appears twice in the access list`);
      continue;
    }
    if (rules.length >= limits.maxAccessRules) {
      problems.add(element.index, `more than ${limits.maxAccessRules} access rules`);
      return;
    }
    patterns.add(pattern);
    rules.push({ pattern, action: element.name as AccessAction });
  }
}

function checkAttributes(
  element: ElementNode,
  allowed: string[],
  required: string[],
  problems: Problems,
): void {
  for (const [name, attribute] of element.attributes) {
    if (name === 'xmlns' && attribute.value === CONTACT_LIST_NAMESPACE) continue;
    if (!allowed.includes(name))
      problems.add(attribute.index, `unknown attribute ${name} on <${element.name}>`);
  }
  for (const name of required) {
    if (!element.attributes.has(name))
      problems.add(element.index, `<${element.name}> needs a ${name} attribute`);
  }
}

function noChildren(element: ElementNode, problems: Problems): void {
  for (const child of element.children)
    problems.add(child.index, `<${element.name}> takes no child elements`);
}
