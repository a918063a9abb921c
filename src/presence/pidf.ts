import { XMLParser, XMLValidator } from 'fast-xml-parser';

/**
 * PIDF (RFC 3863) with the data model of RFC 4479 and the RPID activities of RFC 4480: the
 * subset that SIP clients actually publish (basic open/closed per tuple, a person with
 * activities such as away, busy, on-the-phone, and notes). Pure: strings in, values out.
 */

export const PIDF_NS = 'urn:ietf:params:xml:ns:pidf';
export const DATA_MODEL_NS = 'urn:ietf:params:xml:ns:pidf:data-model';
export const RPID_NS = 'urn:ietf:params:xml:ns:pidf:rpid';
// RFC 3863 section 4.3's example status extension, still sent by X-Lite-era clients and SIP.js apps.
export const PIDF_IM_NS = 'urn:ietf:params:xml:ns:pidf:im';
const XML_NS = 'http://www.w3.org/XML/1998/namespace';

export const PIDF_CONTENT_TYPE = 'application/pidf+xml';
export const DEFAULT_MAX_PIDF_BYTES = 64 * 1024;

export interface PresenceTuple {
  id: string;
  basic: 'open' | 'closed';
  contact?: string;
  note?: string;
  /** RFC 3863 4.1.4 contact priority, 0..1. */
  priority?: number;
  timestamp?: string;
}

export interface PresenceDocument {
  entity: string;
  tuples: PresenceTuple[];
  /** Presence-level notes (children of <presence>). */
  notes: string[];
  /** RPID activities (RFC 4480 3.2): away, busy, on-the-phone, meeting, ... An unlisted activity is its text. */
  activities: string[];
  person?: { id: string; activities: string[]; note?: string };
  /** The document as received, when parsed. */
  raw?: string;
}

export type PidfParse = { ok: true; doc: PresenceDocument } | { ok: false; reason: string };

/** RFC 4480 section 3.2 activity elements. Anything else is carried in <rpid:other>. */
export const RPID_ACTIVITIES: ReadonlySet<string> = new Set([
  'appointment',
  'away',
  'breakfast',
  'busy',
  'dinner',
  'holiday',
  'in-transit',
  'looking-for-work',
  'meal',
  'meeting',
  'on-the-phone',
  'performance',
  'permanent-absence',
  'playing',
  'presentation',
  'shopping',
  'sleeping',
  'spectator',
  'steering',
  'travel',
  'tv',
  'unknown',
  'vacation',
  'working',
  'worship',
]);

// <im:im> values of pre-RPID clients, mapped to the RPID activity they mean. "online" and the
// like carry no activity.
const IM_STATUS_ACTIVITIES: Record<string, string> = {
  away: 'away',
  berightback: 'away',
  idle: 'away',
  busy: 'busy',
  dnd: 'busy',
  onthephone: 'on-the-phone',
  'on-the-phone': 'on-the-phone',
  outtolunch: 'meal',
};

interface XmlElement {
  ns: string;
  name: string;
  /** Unprefixed attributes by name; prefixed ones by "{namespace}local". */
  attrs: Map<string, string>;
  children: XmlElement[];
  text: string;
}

type FxpNode = Record<string, unknown>;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  // Entities are decoded below with only XML's five predefined ones and character references,
  // so no expansion (internal or external) can ever happen (XXE, billion laughs).
  processEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  cdataPropName: '#cdata',
  maxNestedTags: 64,
});

class PidfError extends Error {}

const PREDEFINED_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  let out = '';
  let i = 0;
  for (;;) {
    const amp = s.indexOf('&', i);
    if (amp < 0) return out + s.slice(i);
    const semi = s.indexOf(';', amp);
    if (semi < 0 || semi - amp > 12) throw new PidfError('malformed entity reference');
    out += s.slice(i, amp);
    const name = s.slice(amp + 1, semi);
    if (name.startsWith('#')) {
      const code = name[1] === 'x' ? Number.parseInt(name.slice(2), 16) : Number.parseInt(name.slice(1), 10);
      if (!Number.isInteger(code) || code < 0 || code > 0x10ffff)
        throw new PidfError('bad character reference');
      out += String.fromCodePoint(code);
    } else {
      const value = PREDEFINED_ENTITIES[name];
      if (value === undefined) throw new PidfError(`undeclared entity &${name};`);
      out += value;
    }
    i = semi + 1;
  }
}

function splitQName(qname: string): [prefix: string, local: string] {
  const colon = qname.indexOf(':');
  return colon < 0 ? ['', qname] : [qname.slice(0, colon), qname.slice(colon + 1)];
}

/** Resolves prefixes against the in-scope xmlns declarations (Namespaces in XML 1.0 section 6). */
function toElement(node: FxpNode, scope: ReadonlyMap<string, string>, depth: number): XmlElement | undefined {
  if (depth > 64) throw new PidfError('document nested too deeply');
  let qname: string | undefined;
  for (const key of Object.keys(node)) {
    if (key !== ':@') {
      qname = key;
      break;
    }
  }
  if (qname === undefined || qname.startsWith('#') || qname.startsWith('?')) return undefined;
  const rawAttrs = (node[':@'] ?? {}) as Record<string, string>;
  let inScope = scope;
  for (const [name, value] of Object.entries(rawAttrs)) {
    if (name === 'xmlns' || name.startsWith('xmlns:')) {
      if (inScope === scope) inScope = new Map(scope);
      (inScope as Map<string, string>).set(name === 'xmlns' ? '' : name.slice(6), decodeEntities(value));
    }
  }
  const [prefix, local] = splitQName(qname);
  const ns = inScope.get(prefix);
  if (ns === undefined) throw new PidfError(`unbound namespace prefix ${prefix}`);
  const attrs = new Map<string, string>();
  for (const [name, value] of Object.entries(rawAttrs)) {
    if (name === 'xmlns' || name.startsWith('xmlns:')) continue;
    const [attrPrefix, attrLocal] = splitQName(name);
    if (attrPrefix === '') {
      attrs.set(attrLocal, decodeEntities(value));
    } else {
      const attrNs = attrPrefix === 'xml' ? XML_NS : inScope.get(attrPrefix);
      if (attrNs === undefined) throw new PidfError(`unbound namespace prefix ${attrPrefix}`);
      attrs.set(`{${attrNs}}${attrLocal}`, decodeEntities(value));
    }
  }
  const element: XmlElement = { ns, name: local, attrs, children: [], text: '' };
  const content = node[qname];
  if (Array.isArray(content)) {
    for (const child of content as FxpNode[]) {
      if ('#text' in child) element.text += decodeEntities(String(child['#text']));
      else if ('#cdata' in child) element.text += cdataText(child['#cdata']);
      else {
        const childElement = toElement(child, inScope, depth + 1);
        if (childElement) element.children.push(childElement);
      }
    }
  }
  return element;
}

function cdataText(value: unknown): string {
  if (Array.isArray(value)) return value.map((part) => String((part as FxpNode)['#text'] ?? '')).join('');
  return String(value ?? '');
}

function childrenOf(element: XmlElement, ns: string, name: string): XmlElement[] {
  return element.children.filter((child) => child.ns === ns && child.name === name);
}

function firstChild(element: XmlElement, ns: string, name: string): XmlElement | undefined {
  return element.children.find((child) => child.ns === ns && child.name === name);
}

/** RFC 4480 3.2: each child of <activities> but <note> is one activity; <other> carries free text. */
function readActivities(activities: XmlElement): string[] {
  const out: string[] = [];
  for (const child of activities.children) {
    if (child.ns !== RPID_NS || child.name === 'note') continue;
    const activity = child.name === 'other' && child.text.trim() !== '' ? child.text.trim() : child.name;
    if (!out.includes(activity)) out.push(activity);
  }
  return out;
}

function readNote(parent: XmlElement, ns: string): string | undefined {
  const notes = childrenOf(parent, ns, 'note');
  if (notes.length === 0) return undefined;
  // Several notes are translations (xml:lang); an unlabelled or English one is the safest pick.
  const preferred =
    notes.find((n) => !n.attrs.has(`{${XML_NS}}lang`)) ??
    notes.find((n) => n.attrs.get(`{${XML_NS}}lang`)?.toLowerCase().startsWith('en')) ??
    notes[0]!;
  return preferred.text;
}

interface TupleExtras {
  activities: string[];
  imStatus: string[];
}

function readTuple(tuple: XmlElement, index: number, extras: TupleExtras): PresenceTuple {
  const status = firstChild(tuple, PIDF_NS, 'status');
  const basicText = status ? firstChild(status, PIDF_NS, 'basic')?.text.trim().toLowerCase() : undefined;
  // RFC 3863 4.1.4: basic is open or closed; a missing or misspelt one (baresip's "unkown")
  // promises nothing, so it reads as closed rather than failing the whole publication.
  const parsed: PresenceTuple = {
    id: tuple.attrs.get('id') || `t${index}`,
    basic: basicText === 'open' ? 'open' : 'closed',
  };
  if (status) {
    for (const child of status.children) {
      if (child.ns === RPID_NS && child.name === 'activities')
        extras.activities.push(...readActivities(child));
      if (child.ns === PIDF_IM_NS && child.name === 'im')
        extras.imStatus.push(child.text.trim().toLowerCase());
    }
  }
  const contact = firstChild(tuple, PIDF_NS, 'contact');
  if (contact && contact.text.trim() !== '') {
    parsed.contact = contact.text.trim();
    const priority = Number(contact.attrs.get('priority'));
    if (contact.attrs.has('priority') && Number.isFinite(priority) && priority >= 0 && priority <= 1) {
      parsed.priority = priority;
    }
  }
  const note = readNote(tuple, PIDF_NS);
  if (note !== undefined) parsed.note = note;
  const timestamp = firstChild(tuple, PIDF_NS, 'timestamp')?.text.trim();
  if (timestamp) parsed.timestamp = timestamp;
  return parsed;
}

export interface ParsePidfOptions {
  maxBytes?: number;
}

/**
 * Parses a PIDF body. Namespaces are resolved from the document's own declarations, since
 * clients pick arbitrary prefixes (or default namespaces) for PIDF, data-model and RPID.
 * DOCTYPE is refused outright (RFC 3863 has no DTD; a DOCTYPE is only ever an entity attack).
 */
export function parsePidf(xml: string, opts: ParsePidfOptions = {}): PidfParse {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_PIDF_BYTES;
  if (xml.length > maxBytes || Buffer.byteLength(xml, 'utf8') > maxBytes) {
    return { ok: false, reason: `document larger than ${maxBytes} bytes` };
  }
  const upper = xml.toUpperCase();
  if (upper.includes('<!DOCTYPE') || upper.includes('<!ENTITY')) {
    return { ok: false, reason: 'DOCTYPE and entity declarations are not allowed' };
  }
  const body = xml.charCodeAt(0) === 0xfeff ? xml.slice(1) : xml;
  const valid = XMLValidator.validate(body);
  if (valid !== true) return { ok: false, reason: `malformed XML: ${valid.err.msg}` };
  try {
    const nodes = parser.parse(body) as FxpNode[];
    const initialScope = new Map<string, string>([['xml', XML_NS]]);
    let root: XmlElement | undefined;
    for (const node of nodes) {
      const element = toElement(node, initialScope, 0);
      if (!element) continue;
      if (root) return { ok: false, reason: 'more than one root element' };
      root = element;
    }
    if (!root || root.ns !== PIDF_NS || root.name !== 'presence') {
      return { ok: false, reason: 'root element is not a PIDF <presence>' };
    }
    const entity = root.attrs.get('entity')?.trim();
    if (!entity) return { ok: false, reason: 'presence has no entity' };

    const doc: PresenceDocument = { entity, tuples: [], notes: [], activities: [], raw: xml };
    const extras: TupleExtras = { activities: [], imStatus: [] };
    for (const child of root.children) {
      if (child.ns === PIDF_NS && child.name === 'tuple') {
        doc.tuples.push(readTuple(child, doc.tuples.length, extras));
      } else if (child.ns === PIDF_NS && child.name === 'note') {
        if (child.text !== '') doc.notes.push(child.text);
      } else if (child.ns === DATA_MODEL_NS && child.name === 'person' && !doc.person) {
        const activities = firstChild(child, RPID_NS, 'activities');
        const person: NonNullable<PresenceDocument['person']> = {
          id: child.attrs.get('id') || 'p0',
          activities: activities ? readActivities(activities) : [],
        };
        const note = readNote(child, DATA_MODEL_NS);
        if (note !== undefined) person.note = note;
        doc.person = person;
      }
    }
    // Precedence: the person's RPID activities (RFC 4479 puts them there), then RPID inside a
    // tuple's status (pre-RFC 4479 drafts), then the legacy <im:im> status text.
    if (doc.person && doc.person.activities.length > 0) doc.activities = [...doc.person.activities];
    else if (extras.activities.length > 0) doc.activities = dedupe(extras.activities);
    else doc.activities = dedupe(extras.imStatus.map((s) => IM_STATUS_ACTIVITIES[s]).filter(isString));
    return { ok: true, doc };
  } catch (error) {
    if (error instanceof PidfError) return { ok: false, reason: error.message };
    return { ok: false, reason: `malformed XML: ${(error as Error).message}` };
  }
}

function isString(value: string | undefined): value is string {
  return value !== undefined;
}

function dedupe(values: string[]): string[] {
  return [...new Set(values)];
}

// Characters XML 1.0 (section 2.2) cannot carry at all: they are dropped, not escaped.
const INVALID_XML_CHARS =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function escapeXml(value: string): string {
  return value
    .replace(INVALID_XML_CHARS, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** xs:ID values must be NCNames; ids from clients or callers are coerced rather than trusted. */
function toXmlId(value: string, fallback: string): string {
  let id = value.replace(/[^A-Za-z0-9._-]/g, '_');
  if (id === '') id = fallback;
  if (!/^[A-Za-z_]/.test(id)) id = `${fallback}${id}`;
  return id;
}

/** An entity is a URI (RFC 3863 4.1.1); a bare address-of-record is taken as a SIP one. */
export function presenceEntityUri(entity: string): string {
  return entity.includes(':') ? entity : `sip:${entity}`;
}

function formatPriority(priority: number): string {
  // RFC 3863 qvalue-like decimal with at most three decimals.
  return String(Math.round(Math.min(1, Math.max(0, priority)) * 1000) / 1000);
}

function activityXml(activity: string): string {
  if (RPID_ACTIVITIES.has(activity)) return `<rpid:${activity}/>`;
  if (activity === 'other') return '<rpid:other/>';
  return `<rpid:other>${escapeXml(activity)}</rpid:other>`;
}

/**
 * Serializes a document in the canonical form Parley sends: PIDF default namespace with the
 * data-model and RPID prefixes declared on the root, children in the RFC 3863 schema order
 * (tuples, notes, then extensions such as <dm:person>).
 */
export function buildPidf(doc: PresenceDocument): string {
  const parts: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>\n',
    `<presence xmlns="${PIDF_NS}" xmlns:dm="${DATA_MODEL_NS}" xmlns:rpid="${RPID_NS}" entity="${escapeXml(presenceEntityUri(doc.entity))}">\n`,
  ];
  const usedIds = new Set<string>();
  const uniqueId = (candidate: string): string => {
    let id = candidate;
    for (let n = 2; usedIds.has(id); n++) id = `${candidate}-${n}`;
    usedIds.add(id);
    return id;
  };
  doc.tuples.forEach((tuple, index) => {
    parts.push(` <tuple id="${uniqueId(toXmlId(tuple.id, `t${index}`))}">\n`);
    parts.push(`  <status><basic>${tuple.basic === 'open' ? 'open' : 'closed'}</basic></status>\n`);
    if (tuple.contact !== undefined) {
      const priority =
        tuple.priority !== undefined && Number.isFinite(tuple.priority)
          ? ` priority="${formatPriority(tuple.priority)}"`
          : '';
      parts.push(`  <contact${priority}>${escapeXml(tuple.contact)}</contact>\n`);
    }
    if (tuple.note !== undefined) parts.push(`  <note>${escapeXml(tuple.note)}</note>\n`);
    if (tuple.timestamp !== undefined) parts.push(`  <timestamp>${escapeXml(tuple.timestamp)}</timestamp>\n`);
    parts.push(' </tuple>\n');
  });
  for (const note of doc.notes) parts.push(` <note>${escapeXml(note)}</note>\n`);
  const activities = dedupe([...(doc.person?.activities ?? []), ...doc.activities]);
  if (doc.person || activities.length > 0) {
    const personId = uniqueId(toXmlId(doc.person?.id ?? 'p', 'p'));
    parts.push(` <dm:person id="${personId}">\n`);
    if (activities.length > 0)
      parts.push(`  <rpid:activities>${activities.map(activityXml).join('')}</rpid:activities>\n`);
    if (doc.person?.note !== undefined) parts.push(`  <dm:note>${escapeXml(doc.person.note)}</dm:note>\n`);
    parts.push(' </dm:person>\n');
  }
  parts.push('</presence>\n');
  return parts.join('');
}

/**
 * The "offline" document: what a watcher sees for a user with no publication, and, identical
 * byte for byte, what a politely blocked watcher sees (RFC 5025 3.2.1 polite-block), so the
 * two cannot be told apart.
 */
export function closedPresence(entity: string): string {
  return buildPidf({ entity, tuples: [{ id: 'offline', basic: 'closed' }], notes: [], activities: [] });
}
