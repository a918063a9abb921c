import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isWhitespace, readQuotedString, skipToken, skipWhitespace } from '../sip/lexer.js';
import { parseUri, type SipUri, unescapeUriPart } from '../sip/uri.js';

/**
 * HTTP Digest authentication as SIP uses it (RFC 3261 section 22.4), with the algorithms of
 * RFC 7616 and the SIP upgrade rules of RFC 8760. Pure functions: the registrar owns the
 * message handling and looks up the stored HA1 (credentials table) itself.
 */

export type DigestAlgorithm = 'MD5' | 'SHA-256';

const HASH_NAME: Record<DigestAlgorithm, string> = { MD5: 'md5', 'SHA-256': 'sha256' };
const HEX_LENGTH: Record<DigestAlgorithm, number> = { MD5: 32, 'SHA-256': 64 };

// One-shot hashing: no Hash object per call, on a path that runs several times per REGISTER.
function hashHex(algorithm: DigestAlgorithm, input: string | Buffer): string {
  return hash(HASH_NAME[algorithm], input, 'hex');
}

/** H(username ":" realm ":" password), RFC 7616 section 3.4.2, lower-case hex. */
export function computeHa1(
  username: string,
  realm: string,
  password: string,
  algorithm: DigestAlgorithm,
): string {
  return hashHex(algorithm, `${username}:${realm}:${password}`);
}

export interface NonceManagerOptions {
  /** Shared by every front-end of a pool, so any of them validates a nonce another one issued. */
  secret: Buffer;
  lifetimeSeconds?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
}

/**
 * 'stale' = ours and untampered but expired; 'other-flow' = ours and in time but issued to
 * another connection. Both are answered with a fresh challenge and stale=true (RFC 7616 3.3)
 * when the response is otherwise right, so a client that reconnected retries silently.
 */
export type NonceCheck = 'valid' | 'stale' | 'other-flow' | 'invalid';

export interface NonceInspection {
  check: NonceCheck;
  /** Issue time (ms since the epoch) of a nonce that is ours; NaN for an invalid one. */
  issuedAt: number;
}

// Nonce layout (before base64url): 8 bytes issue time (ms, big endian), 8 random bytes so two
// nonces issued in the same millisecond differ, 8 bytes flow tag (a keyed hash of the
// connection the challenge went out on), 16 bytes of HMAC-SHA256(secret, first 24 bytes |
// realm). 40 bytes -> 54 base64url characters, no padding.
const TIME_BYTES = 8;
const SALT_BYTES = 8;
const FLOW_TAG_BYTES = 8;
const MAC_BYTES = 16;
const FLOW_TAG_OFFSET = TIME_BYTES + SALT_BYTES;
const PAYLOAD_BYTES = FLOW_TAG_OFFSET + FLOW_TAG_BYTES;
const NONCE_BYTES = PAYLOAD_BYTES + MAC_BYTES;
const NONCE_CHARS = 54;
// Front-ends sharing a secret may disagree slightly about the time; a nonce "from the future"
// within this margin is still accepted.
const CLOCK_SKEW_MS = 30_000;
const MAX_CACHED_FLOW_TAGS = 8192;
/** Bytes after the secret for a seed's text (a transaction key is a branch, a sent-by and a method). */
const SEED_ROOM = 1024;
/** Challenges issued and not yet answered that inspect() recognises without signing again. */
const MAX_OUTSTANDING = 16_384;

/**
 * What makes a nonce repeatable: issued at `issuedAt` (ms) for `key` (a transaction), with its
 * salt derived from both under the secret instead of drawn at random, the same nonce comes out
 * each time. Over UDP the challenge to a retransmitted request is built again this way
 * rather than kept (RFC 3261 17.2.2; transaction/completed.ts).
 */
export interface NonceSeed {
  readonly key: string;
  readonly issuedAt: number;
}

/** What create() signed into a nonce, kept until the nonce's first answer. */
interface Issued {
  readonly realm: string;
  readonly flowKey: string;
  readonly issuedAt: number;
}

/**
 * Stateless nonces (RFC 7616 section 3.3 suggests time-stamped, keyed-hash nonces): nothing
 * is stored to validate one, so any front-end that shares the secret checks its signature
 * and age. Each nonce is bound to the flow (connection) its challenge went out on: the
 * caller passes a flow key (Parley passes the flow id, which carries a per-process random
 * prefix), and a nonce presented on any other connection checks as 'other-flow'. A captured
 * Authorization is therefore useless on the attacker's own connection, to this front-end or
 * to any other of the pool (flows are per front-end), without any shared state. Replay on
 * the same connection is the NonceCountWindow's job (nc tracking, in memory: it only has to
 * cover nonces this process issued to its own flows).
 */
export class NonceManager {
  private readonly secret: Buffer;
  private readonly lifetimeMs: number;
  private readonly now: () => number;
  private saltPool = Buffer.alloc(0);
  private readonly signBuffers = new Map<string, Buffer>();
  /** The secret, then room for a seed's text: seededSalt writes into it instead of concatenating. */
  private readonly seedBuffer: Buffer;
  private readonly flowTags = new Map<string, Buffer>();
  /**
   * Nonces this manager issued, until their first answer: that answer (the authenticated
   * REGISTER right after its 401) is checked by a look-up here instead of signing the
   * payload a second time. Later answers (nc 2 and on), nonces issued by another front-end
   * sharing the secret, and challenges pushed out of the bounded map are checked by their
   * signature as before, with the same result.
   */
  private readonly outstanding = new Map<string, Issued>();
  private evictor?: Iterator<string>;
  private saltOffset = 0;

  constructor(opts: NonceManagerOptions) {
    if (opts.secret.length < 16) throw new Error('nonce secret must be at least 16 bytes');
    this.secret = opts.secret;
    this.seedBuffer = Buffer.concat([opts.secret, Buffer.alloc(SEED_ROOM)]);
    this.lifetimeMs = (opts.lifetimeSeconds ?? 300) * 1000;
    this.now = opts.now ?? Date.now;
  }

  /** The time a nonce created now would carry (ms since the epoch, whole). */
  issueTime(): number {
    return Math.max(0, Math.floor(this.now()));
  }

  get lifetimeSeconds(): number {
    return this.lifetimeMs / 1000;
  }

  /**
   * The realm is bound into the signature so a nonce issued for one realm fails in another;
   * the flow key ('' when the caller has no connection to name) binds it to one connection.
   */
  create(realm = '', flowKey = '', seed?: NonceSeed): string {
    const nonce = Buffer.allocUnsafe(NONCE_BYTES);
    const issuedAt = seed ? Math.max(0, Math.floor(seed.issuedAt)) : this.issueTime();
    // The time as a 64-bit big-endian integer, in two halves (no BigInt a nonce).
    nonce.writeUInt32BE(Math.floor(issuedAt / 0x1_0000_0000), 0);
    nonce.writeUInt32BE(issuedAt >>> 0, 4);
    (seed ? this.seededSalt(seed.key, issuedAt) : this.nextSalt()).copy(nonce, TIME_BYTES);
    this.flowTag(flowKey).copy(nonce, FLOW_TAG_OFFSET);
    this.sign(nonce.subarray(0, PAYLOAD_BYTES), realm).copy(nonce, PAYLOAD_BYTES);
    const text = nonce.toString('base64url');
    // Challenges nobody answers must not pile up: past the bound the oldest goes (the map
    // keeps insertion order). 16,384 covers 1.6 s of queueing at 10,000 challenges a second.
    // The oldest is found by an iterator kept from one eviction to the next: a new one starts at
    // the front of the map, where V8 keeps the slots of the nonces answered (deleted) until it
    // rehashes, and walked them for every challenge once the bound was reached (under overload,
    // when challenges wait longest: 50% of create()'s time in a node script of 18:55).
    if (this.outstanding.size >= MAX_OUTSTANDING) {
      let oldest = this.evictor?.next();
      if (oldest === undefined || oldest.done) {
        this.evictor = this.outstanding.keys();
        oldest = this.evictor.next();
      }
      if (!oldest.done) this.outstanding.delete(oldest.value);
    }
    this.outstanding.set(text, { realm, flowKey, issuedAt });
    return text;
  }

  check(nonce: string, realm = '', flowKey = ''): NonceCheck {
    return this.inspect(nonce, realm, flowKey).check;
  }

  inspect(nonce: string, realm = '', flowKey = ''): NonceInspection {
    const issued = this.outstanding.get(nonce);
    if (issued !== undefined && issued.realm === realm) {
      // Issued here for this realm: its signature is ours by construction. The flow tag is a
      // function of the flow key, so comparing the keys is comparing the tags.
      this.outstanding.delete(nonce);
      return this.judge(issued.issuedAt, issued.flowKey === flowKey);
    }
    if (nonce.length !== NONCE_CHARS || !isBase64Url(nonce)) return INVALID;
    const bytes = Buffer.from(nonce, 'base64url');
    if (bytes.length !== NONCE_BYTES) return INVALID;
    const expected = this.sign(bytes.subarray(0, PAYLOAD_BYTES), realm);
    if (!timingSafeEqual(expected, bytes.subarray(PAYLOAD_BYTES))) return INVALID;
    const tag = bytes.subarray(FLOW_TAG_OFFSET, PAYLOAD_BYTES);
    return this.judge(Number(bytes.readBigUInt64BE(0)), timingSafeEqual(this.flowTag(flowKey), tag));
  }

  /** A nonce whose signature is good: its age, then its connection, decide. */
  private judge(issuedAt: number, sameFlow: boolean): NonceInspection {
    const age = this.now() - issuedAt;
    if (age < -CLOCK_SKEW_MS) return INVALID;
    if (age > this.lifetimeMs) return { check: 'stale', issuedAt };
    if (!sameFlow) return { check: 'other-flow', issuedAt };
    return { check: 'valid', issuedAt };
  }

  /** Keyed, so the tag does not reveal which flow ids exist; cached because flows answer many challenges. */
  private flowTag(flowKey: string): Buffer {
    let tag = this.flowTags.get(flowKey);
    if (!tag) {
      if (this.flowTags.size >= MAX_CACHED_FLOW_TAGS) this.flowTags.clear();
      tag = hash(
        'sha256',
        Buffer.concat([this.secret, Buffer.from(`|flow|${flowKey}`, 'utf8')]),
        'buffer',
      ).subarray(0, FLOW_TAG_BYTES);
      this.flowTags.set(flowKey, tag);
    }
    return tag;
  }

  /**
   * The salt of a seeded nonce: a keyed hash of the seed's key and time, as unpredictable as
   * a random one to anyone without the secret, and the same each time for the same seed.
   */
  private seededSalt(key: string, issuedAt: number): Buffer {
    const text = `|seed|${issuedAt}|${key}`;
    const buf = this.seedBuffer;
    const start = this.secret.length;
    // Written after the secret in the buffer kept for it (one hash, no Buffer made on the way),
    // unless it might not fit (3 bytes a UTF-16 unit at most): the bytes hashed are the same.
    const input =
      text.length * 3 <= SEED_ROOM
        ? buf.subarray(0, start + buf.write(text, start, 'utf8'))
        : Buffer.concat([this.secret, Buffer.from(text, 'utf8')]);
    return hash('sha256', input, 'buffer').subarray(0, SALT_BYTES);
  }

  // One randomBytes call per 512 nonces: the synchronous call dominates create() otherwise.
  private nextSalt(): Buffer {
    if (this.saltOffset + SALT_BYTES > this.saltPool.length) {
      this.saltPool = randomBytes(SALT_BYTES * 512);
      this.saltOffset = 0;
    }
    const salt = this.saltPool.subarray(this.saltOffset, this.saltOffset + SALT_BYTES);
    this.saltOffset += SALT_BYTES;
    return salt;
  }

  /**
   * SHA-256 over secret | payload | "|" | realm, one-shot into a reused buffer (twice as fast
   * as an Hmac object; it runs once per challenge, and again for answers inspect() does not
   * find among the outstanding nonces). A secret-prefix hash is a sound
   * MAC here: the payload has a fixed length and the realm is the server's own, so no
   * length-extended message is ever checked.
   */
  private sign(payload: Buffer, realm: string): Buffer {
    let buf = this.signBuffers.get(realm);
    if (!buf) {
      if (this.signBuffers.size >= 16) this.signBuffers.clear();
      buf = Buffer.concat([this.secret, Buffer.alloc(PAYLOAD_BYTES), Buffer.from(`|${realm}`, 'utf8')]);
      this.signBuffers.set(realm, buf);
    }
    payload.copy(buf, this.secret.length);
    return hash('sha256', buf, 'buffer').subarray(0, MAC_BYTES);
  }
}

const INVALID: NonceInspection = Object.freeze({ check: 'invalid', issuedAt: Number.NaN });

function isBase64Url(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x5f;
    if (!ok) return false;
  }
  return true;
}

export interface DigestChallengeOptions {
  realm: string;
  stale?: boolean;
  /** Default ['SHA-256', 'MD5']: one challenge per algorithm, preferred first (RFC 8760 2.4). */
  algorithms?: DigestAlgorithm[];
  /** Returned unchanged by the client (RFC 7616 3.3); Parley's nonces need none, front-ends may. */
  opaque?: string;
  /** The connection the challenge goes out on: the nonce is only good there (NonceManager). */
  flowKey?: string;
  /** Default ['auth']. 'auth-int' also covers the body (RFC 7616 3.4.3). */
  qop?: DigestQop[];
  /** A repeatable nonce (NonceManager.create); unset: a random one. */
  seed?: NonceSeed;
}

/** A challenge's header values and the To tag of its response, both derived from its nonce. */
export interface DigestChallenge {
  values: string[];
  toTag: string;
}

let lastQuoted = { value: '', quoted: '""' };

/**
 * Quoted-string with `"` and `\` escaped as quoted-pairs (RFC 3261 25.1). The last one is
 * remembered: every challenge quotes the same realm.
 */
function quote(value: string): string {
  if (value === lastQuoted.value) return lastQuoted.quoted;
  const quoted = quoteOnce(value);
  lastQuoted = { value, quoted };
  return quoted;
}

function quoteOnce(value: string): string {
  let out = '"';
  for (const ch of value) {
    if (ch === '"' || ch === '\\') out += '\\';
    out += ch;
  }
  return `${out}"`;
}

/**
 * WWW-Authenticate / Proxy-Authenticate header values, and the To tag for the response. All
 * challenges share one nonce so the client may answer whichever algorithm it supports (RFC
 * 8760 section 2.4: the UAS adds one challenge per algorithm, most preferred first; the UAC
 * uses the topmost it supports). The To tag is ten characters of the nonce's salt (60 bits:
 * random, or keyed-hashed for a seeded nonce, RFC 3261 19.3 asks at least 32), so a challenge
 * built again from the same seed is the same response byte for byte.
 */
export function buildChallenge(nonces: NonceManager, opts: DigestChallengeOptions): DigestChallenge {
  const algorithms = opts.algorithms ?? ['SHA-256', 'MD5'];
  if (algorithms.length === 0) throw new Error('at least one digest algorithm is required');
  const nonce = nonces.create(opts.realm, opts.flowKey, opts.seed);
  const qop = (opts.qop ?? ['auth']).join(',');
  const values = algorithms.map((algorithm) => {
    let value = `Digest realm=${quote(opts.realm)}, nonce="${nonce}"`;
    if (opts.opaque !== undefined) value += `, opaque=${quote(opts.opaque)}`;
    value += `, algorithm=${algorithm}, qop="${qop}"`;
    if (opts.stale) value += ', stale=TRUE';
    return value;
  });
  // Characters 11-20 of the base64url text are bits 66-125: inside the salt (bytes 8-15).
  return { values, toTag: nonce.slice(11, 21) };
}

export type DigestQop = 'auth' | 'auth-int';

export interface DigestCredentials {
  username: string;
  realm: string;
  nonce: string;
  uri: string;
  response: string;
  algorithm: DigestAlgorithm;
  qop?: DigestQop;
  nc?: string;
  cnonce?: string;
  opaque?: string;
}

/**
 * A parse failure. `algorithm` is set when the credentials were well formed but named an
 * algorithm this module does not implement (SHA-512-256, the -sess variants, a made-up one):
 * the authenticator answers those with a fresh challenge rather than 400 (it never offered them).
 */
export interface AuthorizationError {
  error: string;
  algorithm?: string;
  username?: string;
}

export type AuthorizationParse = DigestCredentials | AuthorizationError;

const EQUALS = 0x3d;
const COMMA = 0x2c;
const DQUOTE = 0x22;

/** The directives parseAuthorization keeps, by name; any other is skipped (RFC 7616 3.4). */
interface Directives {
  username?: string;
  realm?: string;
  nonce?: string;
  uri?: string;
  response?: string;
  algorithm?: string;
  qop?: string;
  nc?: string;
  cnonce?: string;
  opaque?: string;
  userhash?: string;
}

const KNOWN_DIRECTIVES: ReadonlySet<string> = new Set([
  'username',
  'realm',
  'nonce',
  'uri',
  'response',
  'algorithm',
  'qop',
  'nc',
  'cnonce',
  'opaque',
  'userhash',
]);

/**
 * Parses an Authorization / Proxy-Authorization value (RFC 3261 25.1 `credentials`, RFC 7616
 * 3.4). A single left-to-right scan, no regular expressions, so hostile input costs linear
 * time. Parameter names are case-insensitive; unknown parameters are skipped (RFC 7616 3.4:
 * "any unrecognized directive MUST be ignored"); a known one given twice is an error. The
 * directives go into one object with a field each (no Map per request).
 */
export function parseAuthorization(headerValue: string): AuthorizationParse {
  const s = headerValue;
  let i = skipWhitespace(s, 0);
  const schemeEnd = skipToken(s, i);
  if (s.slice(i, schemeEnd).toLowerCase() !== 'digest') return { error: 'not a Digest authorization' };
  i = schemeEnd;
  if (i >= s.length || !isWhitespace(s.charCodeAt(i))) return { error: 'malformed Digest credentials' };

  // Every field set from the start: one object shape whatever order a client sends them in.
  const params: Directives = {
    username: undefined,
    realm: undefined,
    nonce: undefined,
    uri: undefined,
    response: undefined,
    algorithm: undefined,
    qop: undefined,
    nc: undefined,
    cnonce: undefined,
    opaque: undefined,
    userhash: undefined,
  };
  for (;;) {
    i = skipWhitespace(s, i);
    if (i >= s.length) break;
    const nameEnd = skipToken(s, i);
    if (nameEnd === i) return { error: `unexpected character at offset ${i}` };
    const name = s.slice(i, nameEnd).toLowerCase();
    i = skipWhitespace(s, nameEnd);
    if (s.charCodeAt(i) !== EQUALS) return { error: `parameter ${name} has no value` };
    i = skipWhitespace(s, i + 1);
    let value: string;
    if (s.charCodeAt(i) === DQUOTE) {
      const quoted = readQuotedString(s, i);
      if (quoted === undefined) return { error: `unterminated quoted value for ${name}` };
      value = quoted.value;
      i = quoted.end;
    } else {
      const valueEnd = skipToken(s, i);
      if (valueEnd === i) return { error: `parameter ${name} has an empty value` };
      value = s.slice(i, valueEnd);
      i = valueEnd;
    }
    if (KNOWN_DIRECTIVES.has(name)) {
      const key = name as keyof Directives;
      if (params[key] !== undefined) return { error: `parameter ${name} given twice` };
      params[key] = value;
    }
    i = skipWhitespace(s, i);
    if (i >= s.length) break;
    if (s.charCodeAt(i) !== COMMA) return { error: `expected ',' at offset ${i}` };
    i++;
  }

  const { username, realm, nonce, uri, response } = params;
  if (username === undefined) return { error: 'missing username' };
  if (realm === undefined) return { error: 'missing realm' };
  if (nonce === undefined) return { error: 'missing nonce' };
  if (uri === undefined) return { error: 'missing uri' };
  if (response === undefined) return { error: 'missing response' };

  // RFC 7616 3.4: absent algorithm means MD5. The -sess variants need per-session state and
  // are not offered in our challenges, so a client must not use them.
  const algorithmRaw = params.algorithm;
  let algorithm: DigestAlgorithm;
  if (algorithmRaw === undefined || algorithmRaw.toUpperCase() === 'MD5') algorithm = 'MD5';
  else if (algorithmRaw.toUpperCase() === 'SHA-256') algorithm = 'SHA-256';
  else return { error: `unsupported algorithm ${algorithmRaw}`, algorithm: algorithmRaw, username };

  // RFC 7616 userhash: we never offer it, so a hashed username cannot be looked up.
  const userhash = params.userhash;
  if (userhash !== undefined && userhash.toLowerCase() === 'true')
    return { error: 'userhash is not supported' };

  const creds: DigestCredentials = { username, realm, nonce, uri, response, algorithm };

  const qop = params.qop;
  if (qop !== undefined) {
    const qopValue = qop.toLowerCase();
    if (qopValue !== 'auth' && qopValue !== 'auth-int') return { error: `unsupported qop ${qop}` };
    const { nc, cnonce } = params;
    if (nc === undefined) return { error: 'missing nc' };
    if (cnonce === undefined) return { error: 'missing cnonce' };
    if (nc.length !== 8 || !isHex(nc)) return { error: 'nc must be 8 hexadecimal digits' };
    creds.qop = qopValue;
    creds.nc = nc;
    creds.cnonce = cnonce;
  }
  if (params.opaque !== undefined) creds.opaque = params.opaque;
  return creds;
}

function isHex(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46))) return false;
  }
  return true;
}

/**
 * The response the client should have computed: RFC 7616 3.4.1 with qop=auth or auth-int
 * (whose A2 adds H(entity-body), 3.4.3), or the RFC 2069 form H(HA1:nonce:HA2) that RFC
 * 3261 22.4 keeps for clients that send no qop.
 */
export function expectedResponse(
  creds: DigestCredentials,
  method: string,
  ha1: string,
  body: Buffer = EMPTY_BODY,
): string {
  if (creds.qop === 'auth-int') {
    const ha2 = hashHex(creds.algorithm, `${method}:${creds.uri}:${hashHex(creds.algorithm, body)}`);
    return hashHex(creds.algorithm, `${ha1}:${creds.nonce}:${creds.nc}:${creds.cnonce}:auth-int:${ha2}`);
  }
  const ha2 = hashHex(creds.algorithm, `${method}:${creds.uri}`);
  if (creds.qop === 'auth') {
    return hashHex(creds.algorithm, `${ha1}:${creds.nonce}:${creds.nc}:${creds.cnonce}:auth:${ha2}`);
  }
  return hashHex(creds.algorithm, `${ha1}:${creds.nonce}:${ha2}`);
}

const EMPTY_BODY = Buffer.alloc(0);

/**
 * Checks the response against the stored HA1 of the credentials' algorithm. Nonce freshness
 * (NonceManager.check), realm, and uri-vs-Request-URI (digestUriMatches) are the caller's
 * separate checks. The comparison is constant-time in the response value.
 */
export function verifyDigest(creds: DigestCredentials, method: string, ha1: string, body?: Buffer): boolean {
  const length = HEX_LENGTH[creds.algorithm];
  if (creds.response.length !== length || ha1.length !== length || !isHex(creds.response)) return false;
  const expected = Buffer.from(expectedResponse(creds, method, ha1.toLowerCase(), body), 'latin1');
  const given = Buffer.from(creds.response.toLowerCase(), 'latin1');
  return timingSafeEqual(expected, given);
}

// RFC 3261 19.1.4: these URI parameters must match when present in either URI.
const SIGNIFICANT_PARAMS = ['user', 'ttl', 'method', 'maddr', 'transport'];

/**
 * RFC 3261 22.4: the digest-uri must name the Request-URI. Some clients send it slightly
 * re-formatted (host case, escaping, parameter order), so equal means equal under RFC 3261
 * 19.1.4 comparison rather than byte-identical. Only sip and sips URIs compare so; anything
 * else must be the same text. The Request-URI may come parsed (SipMessage.requestUri).
 */
export function digestUriMatches(credsUri: string, requestUri: string | SipUri | undefined): boolean {
  if (credsUri === requestUri) return true;
  const a = parseUri(withoutAngles(credsUri));
  const b = typeof requestUri === 'string' ? parseUri(withoutAngles(requestUri)) : requestUri;
  if (!a || !b || a.scheme === 'tel' || a.scheme !== b.scheme) return false;
  if (a.user !== b.user || a.password !== b.password || a.port !== b.port) return false;
  if (a.host.toLowerCase() !== b.host.toLowerCase()) return false;
  for (const name of SIGNIFICANT_PARAMS) {
    if (comparableParam(a.params, name) !== comparableParam(b.params, name)) return false;
  }
  for (const name in a.params) {
    const other = comparableParam(b.params, name);
    if (other !== undefined && other !== comparableParam(a.params, name)) return false;
  }
  return sameUriHeaders(a.headers, b.headers);
}

function withoutAngles(text: string): string {
  const s = text.trim();
  return s.startsWith('<') && s.endsWith('>') ? s.slice(1, -1) : s;
}

/** A URI parameter's value for comparison: unescaped, case-insensitive, '' for a flag. */
function comparableParam(params: Record<string, string | null>, name: string): string | undefined {
  if (!Object.hasOwn(params, name)) return undefined;
  const value = params[name];
  if (value === null) return '';
  return (unescapeUriPart(value) ?? value).toLowerCase();
}

/** RFC 3261 19.1.4: a header component must be present in both URIs, with equal values. */
function sameUriHeaders(a: Record<string, string>, b: Record<string, string>): boolean {
  const names = Object.keys(a);
  if (names.length !== Object.keys(b).length) return false;
  for (const name of names) {
    if (!Object.hasOwn(b, name)) return false;
    if ((unescapeUriPart(a[name]) ?? a[name]) !== (unescapeUriPart(b[name]) ?? b[name])) return false;
  }
  return true;
}
