/**
 * Header names: canonical lower-case full names, compact forms (RFC 3261 7.3.3 and the
 * extensions that registered one), the headers whose values are comma-separated lists,
 * and the spelling used when Parley writes a header itself.
 */

/** Compact form -> full name (RFC 3261 7.3.3, 20; RFC 3265/6665, 3515, 3892, 4028, 3841 ...). */
const COMPACT_FORMS: Record<string, string> = {
  a: 'accept-contact',
  b: 'referred-by',
  c: 'content-type',
  d: 'request-disposition',
  e: 'content-encoding',
  f: 'from',
  i: 'call-id',
  j: 'reject-contact',
  k: 'supported',
  l: 'content-length',
  m: 'contact',
  n: 'identity-info',
  o: 'event',
  r: 'refer-to',
  s: 'subject',
  t: 'to',
  u: 'allow-events',
  v: 'via',
  x: 'session-expires',
  y: 'identity',
};

/** The headers the parser and the services read, in their usual spelling (the hostile-input test sweeps them). */
export const WELL_KNOWN_HEADERS: readonly string[] = [
  'Via',
  'From',
  'To',
  'Call-ID',
  'Call-Id',
  'CSeq',
  'Contact',
  'Max-Forwards',
  'Content-Length',
  'Content-Type',
  'Expires',
  'User-Agent',
  'Server',
  'Route',
  'Record-Route',
  'Allow',
  'Supported',
  'Require',
  'Event',
  'Authorization',
  'WWW-Authenticate',
  'Proxy-Authorization',
  'Proxy-Authenticate',
  'Allow-Events',
  'Accept',
  'Date',
  'Timestamp',
  'Path',
  'Subject',
  'Subscription-State',
  'SIP-ETag',
  'SIP-If-Match',
  'Min-Expires',
];

/** Exact spellings seen on the wire -> canonical name, to skip lower-casing on the hot path. */
const KNOWN_SPELLINGS = new Map<string, string>();
for (const name of WELL_KNOWN_HEADERS) {
  KNOWN_SPELLINGS.set(name, name.toLowerCase());
  KNOWN_SPELLINGS.set(name.toLowerCase(), name.toLowerCase());
}
for (const short in COMPACT_FORMS) {
  KNOWN_SPELLINGS.set(short, COMPACT_FORMS[short]);
  KNOWN_SPELLINGS.set(short.toUpperCase(), COMPACT_FORMS[short]);
}

/** Known spellings grouped by length, for matching inside a header line without slicing it. */
const SPELLINGS_BY_LENGTH: [string, string][][] = [];
for (const [spelling, canonical] of KNOWN_SPELLINGS) {
  SPELLINGS_BY_LENGTH[spelling.length] ??= [];
  SPELLINGS_BY_LENGTH[spelling.length].push([spelling, canonical]);
}

/** Canonical name for a spelling known to be a valid token, or undefined (then check and lower-case). */
export function knownHeaderName(name: string): string | undefined {
  return KNOWN_SPELLINGS.get(name);
}

/**
 * Canonical name when line[0, end) is a known spelling, else undefined. Compares in place,
 * so the common headers cost neither a slice nor a hash.
 */
export function matchKnownHeaderName(line: string, end: number): string | undefined {
  const candidates = SPELLINGS_BY_LENGTH[end];
  if (candidates === undefined) return undefined;
  const first = line.charCodeAt(0);
  for (let k = 0; k < candidates.length; k++) {
    const [spelling, canonical] = candidates[k];
    if (spelling.charCodeAt(0) === first && line.startsWith(spelling)) return canonical;
  }
  return undefined;
}

/** Canonical lower-case full name of a header name as written (compact forms expanded). */
export function canonicalHeaderName(name: string): string {
  const known = KNOWN_SPELLINGS.get(name);
  if (known !== undefined) return known;
  const lower = name.toLowerCase();
  if (lower.length === 1 && Object.hasOwn(COMPACT_FORMS, lower)) return COMPACT_FORMS[lower];
  return lower;
}

/**
 * Headers whose grammar is a comma-separated list (RFC 3261 7.3.1 allows them to be split
 * over several lines or joined in one). Authorization and WWW-Authenticate are absent on
 * purpose: their commas separate auth-params, not values.
 */
const LIST_HEADERS = new Set([
  'via',
  'contact',
  'route',
  'record-route',
  'path',
  'service-route',
  'allow',
  'supported',
  'require',
  'proxy-require',
  'unsupported',
  'accept',
  'accept-encoding',
  'accept-language',
  'accept-contact',
  'reject-contact',
  'request-disposition',
  'allow-events',
  'content-encoding',
  'content-language',
  'in-reply-to',
  'alert-info',
  'call-info',
  'error-info',
  'warning',
  'history-info',
  'reason',
  'security-client',
  'security-server',
  'security-verify',
  'p-asserted-identity',
  'p-preferred-identity',
  'p-associated-uri',
]);

export function isListHeader(name: string): boolean {
  return LIST_HEADERS.has(name);
}

const SPECIAL_SPELLINGS: Record<string, string> = {
  'call-id': 'Call-ID',
  cseq: 'CSeq',
  'www-authenticate': 'WWW-Authenticate',
  'mime-version': 'MIME-Version',
  'sip-etag': 'SIP-ETag',
  'sip-if-match': 'SIP-If-Match',
  rack: 'RAck',
  rseq: 'RSeq',
  'p-asserted-identity': 'P-Asserted-Identity',
  'p-preferred-identity': 'P-Preferred-Identity',
};

const spellingCache = new Map<string, string>();

/** The spelling Parley writes for a header it adds or rewrites: "Call-ID", "Max-Forwards". */
export function displayHeaderName(name: string): string {
  const cached = spellingCache.get(name);
  if (cached !== undefined) return cached;
  const spelled =
    (Object.hasOwn(SPECIAL_SPELLINGS, name) ? SPECIAL_SPELLINGS[name] : undefined) ??
    name
      .split('-')
      .map((part) => (part.length === 0 ? part : part[0].toUpperCase() + part.slice(1)))
      .join('-');
  if (spellingCache.size < 1000) spellingCache.set(name, spelled);
  return spelled;
}
