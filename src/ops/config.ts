import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import YAML from 'yaml';
import {
  DEFAULT_AUTH_FAILURE_POLICY as AUTH_DEFAULTS,
  type AuthFailurePolicy,
} from '../registrar/auth-failures.js';

/**
 * The one typed, validated view of a server's configuration: parley.yaml, then the
 * environment (read here and nowhere else), then command-line overrides. Everything else
 * receives a ParleyConfig and never reads files or process.env for settings.
 */
export interface ParleyConfig {
  /** Absolute path of the file the config was loaded from, if any. */
  file?: string;
  /** SIP domain and digest realm: the first of `domains`, the default for bare user names. */
  domain: string;
  /** The SIP domains this deployment serves (`domains:`, or `domain:` for one); never empty. */
  domains: string[];
  role: ServerRole;
  serverId: string;
  /** Home (standard server or pool name) this server serves; defaults to the domain for `standard`. */
  home?: string;
  listen: {
    /** SIP over UDP (RFC 3261 18): beside TCP on the same port by default. */
    udp?: HostPort;
    tcp?: HostPort;
    tls?: HostPort;
    ws?: HostPort;
    wss?: HostPort;
    /** Edge: the TCP listener inside servers reach the edge on (Path routes, federation.edge). */
    internal?: HostPort;
    /** Edge: the mutual-TLS listener partners' edges connect to (docs/edge.md). */
    federation?: HostPort;
  };
  /** Host or host:port to put in Via/Record-Route when it differs from the listen address. */
  advertise?: string;
  tls?: { cert: string; key: string; ca?: string; requireClientCert: boolean };
  /** TLS/WSS only: plain TCP and WS listeners are refused (`security: high`, or `highSecurity: true`). */
  highSecurity: boolean;
  /** `high` when highSecurity: what `parley server status` shows. */
  security: 'standard' | 'high';
  database: { dataDir: string; url?: string };
  http: HostPort;
  log: { level: LogLevel; format: LogFormat };
  /** Bounds on connections peers open (src/transport/limits.ts); docs/config.md, "limits". */
  limits: {
    maxConnectionsPerAddress: number;
    /** Unset: the open-files soft limit less 256, left for /health, the database and dialled connections. */
    maxConnections?: number;
    headerTimeoutMs: number;
    idleTimeoutMs: number;
    /** Load balancers (addresses or CIDR blocks): no per-address limit, PROXY protocol believed. */
    trustedProxies: string[];
    /**
     * Server transactions open at once: past it, new requests get 503 with Retry-After
     * (RFC 3261 21.5.4) instead of memory. Each waits at most Timer F (32 s) for its answer.
     */
    maxTransactions: number;
  };
  registrar: {
    minExpires: number;
    maxExpires: number;
    defaultExpires: number;
    /** Digest challenges offered, most preferred first (default ['MD5']). */
    digestAlgorithms: DigestAlgorithmName[];
    /** How long a binding outlives the TCP/TLS/WS connection it registered over (default 5). */
    connectionGraceSeconds: number;
  };
  presence: {
    maxExpires: number;
    defaultExpires: number;
    allowSameDomain: boolean;
    /** Seconds; the server's floor under RFC 6446 min-interval: at most one NOTIFY per interval per watcher (0 = none). */
    minNotifyInterval: number;
    /** Presence subscriptions one user may hold at once (all its endpoints), per server. */
    maxSubscriptionsPerUser: number;
    /** Presence subscriptions one endpoint (a device: the user and its Contact) may hold at once. */
    maxSubscriptionsPerEndpoint: number;
    /** Contacts in one user's server-stored contact list. */
    maxContactsPerUser: number;
  };
  /** Digest nonces and password-guessing limits (AuthFailurePolicy, src/registrar/auth-failures.ts). */
  auth: AuthFailurePolicy & {
    /** A nonce's life; a right answer to an older one gets a fresh challenge with stale=true. */
    nonceLifetimeSeconds: number;
  };
  /** Raw section, validated by src/directory/config.ts. */
  directory?: unknown;
  /** Federation through the edge (docs/federation.md). */
  federation: {
    /**
     * DNS servers (host or host:port) asked for partners' SRV records; empty: the system's
     * resolver. For split-horizon DNS or a lab's own zone.
     */
    dnsServers: string[];
    /** Inside servers: SIP URI of the edge's inside listener, where local users' requests for other domains go. */
    edge?: string;
  };
  /**
   * Server peers (the edge, directors), as addresses or CIDR blocks, whose requests this
   * server accepts as already checked: P-Asserted-Identity believed, other domains' senders
   * accepted (federation), a director proxies their REGISTERs instead of redirecting.
   */
  trustedPeers: string[];
  /** Routing between homes in a mixed environment (docs/migration.md). */
  homes: {
    /**
     * SIP URI of a director: a home sends there its users' requests for users of the domain
     * its store does not know (a legacy server never hears of the pool's users).
     */
    director?: string;
  };
  /** The edge role (docs/edge.md). */
  edge: EdgeConfig;
  /** Message archiving (docs/archiving.md). */
  archiving: ArchivingConfig;
  /** The process model (docs/config.md, `server.workers`; src/roles/cluster.ts). */
  server: {
    /**
     * SIP worker processes of a standard server: 1 runs everything in one process (the
     * default); more run a front-end per worker over the embedded store the main process owns.
     */
    workers: number;
    /**
     * V8's semi-space in MiB (the young generation is three of them): a larger one
     * scavenges less often and lets a request's garbage die young. V8 reads it only when a
     * process starts, so `parley server start` runs the server in a second process with
     * `--max-semi-space-size` (src/roles/heap.ts); 0 keeps V8's own (16 MiB) in one process.
     */
    semiSpaceMb: number;
  };
}

export interface ArchivingConfig {
  /** Archive every MESSAGE routed (of the users below, or everyone). */
  enabled: boolean;
  /** Only messages from or to these users (AORs)... */
  users: string[];
  /** ...or members of these directory groups (lower case); both empty: everyone. */
  groups: string[];
  /** Days a message is kept; the daily purge deletes older ones. 0 keeps them forever. */
  retentionDays: number;
  /** `block`: refuse messages (500) while the archive cannot be written; `continue`: deliver and alert. */
  onFailure: 'block' | 'continue';
  /** Rows written in one statement at most. */
  batchSize: number;
  /** A batch is written at the latest this long after its first message. */
  flushMs: number;
}

export interface EdgeConfig {
  /** SIP URI of the inside next hop: a director or a pool's load balancer (required for the edge role). */
  next?: string;
  /** Requests per second one outside address may send (token bucket), once it has signed in. */
  requestsPerSecond: number;
  /** Requests an outside address may send at once above its rate. */
  burst: number;
  /** Slow start: the rate (and burst) of an address none of whose connections has signed in yet. */
  unknownRequestsPerSecond: number;
  /** Requests per second from one partner domain (all its edges' connections together). */
  partnerRequestsPerSecond: number;
  partnerBurst: number;
  /** Largest SIP message accepted from outside (bytes); larger is refused and the connection closed. */
  maxMessageSize: number;
}

export type DigestAlgorithmName = 'MD5' | 'SHA-256';

export interface HostPort {
  host: string;
  port: number;
}

export type ServerRole = 'standard' | 'frontend' | 'director' | 'edge';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
/** `auto`: readable lines on a terminal, JSON lines otherwise (src/ops/log.ts). */
export type LogFormat = 'auto' | 'pretty' | 'json';
export type ListenTransport = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

export type DeepPartial<T> = T extends (infer U)[]
  ? DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

export const SERVER_ROLES: readonly ServerRole[] = ['standard', 'frontend', 'director', 'edge'];
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'pretty', 'json'];
export const LISTEN_TRANSPORTS: readonly ListenTransport[] = ['udp', 'tcp', 'tls', 'ws', 'wss'];

export const DEFAULT_CONFIG_FILE = 'parley.yaml';
export const DEFAULT_DOMAIN = 'parley.local';
export const DEFAULT_DATA_DIR = './.parley';
export const DEFAULT_LISTEN: Readonly<Record<'udp' | 'tcp' | 'ws', HostPort>> = {
  udp: { host: '0.0.0.0', port: 5060 },
  tcp: { host: '0.0.0.0', port: 5060 },
  ws: { host: '0.0.0.0', port: 5066 },
};
/** High-security servers get TLS only by default: RFC 3261 26.2.1 port 5061. */
export const DEFAULT_SECURE_LISTEN: Readonly<Record<'tls', HostPort>> = {
  tls: { host: '0.0.0.0', port: 5061 },
};
/** server.semiSpaceMb when unset (bench/README.md, "The young generation"). */
export const DEFAULT_SEMI_SPACE_MB = 64;
export const DEFAULT_HTTP: Readonly<HostPort> = { host: '127.0.0.1', port: 9060 };

/**
 * A configuration mistake, naming where it is (file or source), the key and what is wrong.
 * loadConfig reports every mistake it finds: `problems` lists them (this one first) and the
 * message has one line each.
 */
export class ConfigError extends Error {
  readonly file?: string;
  readonly key: string;
  readonly problem: string;
  problems: ConfigError[] = [this];

  constructor(problem: string, key: string, file?: string) {
    super(`${file ?? 'config'}: ${key ? `${key}: ` : ''}${problem}`);
    this.name = 'ConfigError';
    this.file = file;
    this.key = key;
    this.problem = problem;
  }
}

/** One error for several mistakes: the first's key and file, every line in the message. */
function combineConfigErrors(errors: ConfigError[]): ConfigError {
  if (errors.length === 1) return errors[0];
  const first = errors[0];
  const all = new ConfigError(first.problem, first.key, first.file);
  all.message = errors.map((e) => e.message).join('\n');
  all.problems = errors;
  return all;
}

export interface LoadConfigOptions {
  /** Explicit file: must exist. Without it, PARLEY_CONFIG, then ./parley.yaml if present. */
  configPath?: string;
  /** Values from flags; they win over the file and the environment. */
  overrides?: DeepPartial<ParleyConfig>;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

const TOP_LEVEL_KEYS = [
  'domain',
  'domains',
  'role',
  'serverId',
  'home',
  'listen',
  'advertise',
  'tls',
  'highSecurity',
  'security',
  'database',
  'http',
  'log',
  'limits',
  'registrar',
  'presence',
  'auth',
  'directory',
  'federation',
  'trustedPeers',
  'homes',
  'edge',
  'archiving',
  'server',
] as const;

/** Where a value came from, so an error names the file or the flag layer that set it. */
type Source = { label?: string; baseDir: string };

export function loadConfig(opts: LoadConfigOptions = {}): ParleyConfig {
  const cwd = opts.cwd ?? process.cwd();
  const env = opts.env ?? process.env;

  const explicit = opts.configPath ?? (env.PARLEY_CONFIG ? env.PARLEY_CONFIG : undefined);
  let file: string | undefined;
  let shownName: string | undefined;
  if (explicit) {
    file = resolve(cwd, explicit);
    shownName = explicit;
    if (!existsSync(file)) {
      const how = opts.configPath ? '' : ' (from PARLEY_CONFIG)';
      throw new ConfigError(`config file not found${how}`, '', shownName);
    }
  } else if (existsSync(resolve(cwd, DEFAULT_CONFIG_FILE))) {
    file = resolve(cwd, DEFAULT_CONFIG_FILE);
    shownName = DEFAULT_CONFIG_FILE;
  }

  const fromFile = file ? readYaml(file, shownName!) : {};
  const fileSource: Source = { label: shownName, baseDir: file ? dirname(file) : cwd };

  // PARLEY_DATABASE_URL keeps a PostgreSQL password out of the file (and out of `ps`).
  const fromEnv: Record<string, unknown> = {};
  if (env.PARLEY_DATABASE_URL) fromEnv.database = { url: env.PARLEY_DATABASE_URL };
  const envSource: Source = { label: 'environment', baseDir: cwd };

  const fromFlags = (opts.overrides ?? {}) as Record<string, unknown>;
  const flagSource: Source = { label: 'flags', baseDir: cwd };

  // Validation stops at a mistake; to report them all, drop the key at fault and validate
  // again until the rest passes (a mistake that names no droppable key ends the search).
  const layers: Array<[Record<string, unknown>, Source]> = [
    [structuredClone(fromFlags), flagSource],
    [fromEnv, envSource],
    [fromFile, fileSource],
  ];
  const problems: ConfigError[] = [];
  for (;;) {
    let cfg: ParleyConfig;
    try {
      cfg = validate(new LayeredReader(layers));
    } catch (err) {
      if (!(err instanceof ConfigError) || problems.includes(err)) throw err;
      // A section left empty by dropping a key at fault (listen.tls without a certificate:
      // then listen has no transport) is that mistake's echo, not one more.
      if (err.key && problems.some((p) => p.key?.startsWith(`${err.key}.`)))
        throw combineConfigErrors(problems);
      problems.push(err);
      if (problems.length >= 20 || !dropKey(layers, err)) throw combineConfigErrors(problems);
      continue;
    }
    // Thrown outside the try: caught there, the combined error was taken for one more problem
    // and every line printed twice.
    if (problems.length > 0) throw combineConfigErrors(problems);
    if (file) cfg.file = file;
    return cfg;
  }
}

function dropKey(layers: Array<[Record<string, unknown>, Source]>, err: ConfigError): boolean {
  if (!err.key || err.key.startsWith('line ')) return false;
  const parts = err.key.split('.');
  for (const [layer, source] of layers) {
    if (err.file !== undefined && source.label !== err.file) continue;
    const parent = dig(layer, parts.slice(0, -1).join('.')) ?? (parts.length === 1 ? layer : undefined);
    const last = parts[parts.length - 1];
    if (parent && typeof parent === 'object' && Object.hasOwn(parent, last)) {
      delete (parent as Record<string, unknown>)[last];
      return true;
    }
  }
  return false;
}

function readYaml(file: string, shownName: string): Record<string, unknown> {
  const text = readFileSync(file, 'utf8');
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const err = doc.errors[0];
    const where = err.linePos ? `line ${err.linePos[0].line}` : 'syntax';
    throw new ConfigError(err.message.split('\n')[0], where, shownName);
  }
  const value = doc.toJS() as unknown;
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('the file must be a YAML mapping of keys to values', '', shownName);
  }
  return value as Record<string, unknown>;
}

/**
 * Reads a dotted key from the first layer (flags, environment, file) that sets it, and
 * remembers which layer that was for error messages and relative paths.
 */
class LayeredReader {
  constructor(private readonly layers: Array<[Record<string, unknown>, Source]>) {}

  get(path: string): { value: unknown; source: Source } | undefined {
    for (const [layer, source] of this.layers) {
      const value = dig(layer, path);
      if (value !== undefined) return { value, source };
    }
    return undefined;
  }

  /** True if some layer has the section at all (so defaults for the whole section do not apply). */
  hasSection(path: string): boolean {
    return this.layers.some(([layer]) => {
      const section = dig(layer, path);
      if (section === undefined) return false;
      // `{ tcp: undefined }` from unset flags does not count as setting the section.
      if (section !== null && typeof section === 'object' && !Array.isArray(section)) {
        const values = Object.values(section);
        return values.length === 0 || values.some((v) => v !== undefined);
      }
      return true;
    });
  }

  checkKeys(path: string, allowed: readonly string[]): void {
    for (const [layer, source] of this.layers) {
      const section = path ? dig(layer, path) : layer;
      if (section === undefined || section === null) continue;
      if (typeof section !== 'object' || Array.isArray(section)) {
        throw new ConfigError('must be a mapping of keys to values', path, source.label);
      }
      for (const key of Object.keys(section)) {
        if ((section as Record<string, unknown>)[key] === undefined) continue;
        if (!allowed.includes(key)) {
          const full = path ? `${path}.${key}` : key;
          throw new ConfigError(`unknown key (expected one of: ${allowed.join(', ')})`, full, source.label);
        }
      }
    }
  }
}

function dig(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

const DOMAIN_RE =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const POSTGRES_URL_RE = /^postgres(?:ql)?:\/\//;

function validate(r: LayeredReader): ParleyConfig {
  r.checkKeys('', TOP_LEVEL_KEYS);

  const domains = readDomains(r);
  const domain = domains[0];

  const role = readEnum(r, 'role', SERVER_ROLES, 'standard');
  const serverId = readString(r, 'serverId', `${hostname()}-${role}`);
  if (!/^[A-Za-z0-9._:@-]+$/.test(serverId)) {
    throw new ConfigError(
      `${JSON.stringify(serverId)} may only hold letters, digits and . _ : @ -`,
      'serverId',
      r.get('serverId')?.source.label,
    );
  }
  const home = readOptionalString(r, 'home') ?? (role === 'standard' ? domain : undefined);

  // `security: high` is the documented spelling; `highSecurity: true` the older one.
  const security = readEnum(r, 'security', ['standard', 'high'] as const, 'standard');
  const highSecurityAt = r.get('highSecurity');
  if (
    highSecurityAt &&
    r.get('security') &&
    readBoolean(r, 'highSecurity', false) !== (security === 'high')
  ) {
    throw new ConfigError(
      `contradicts security: ${security} (set one of them)`,
      'highSecurity',
      highSecurityAt.source.label,
    );
  }
  const highSecurity = security === 'high' || readBoolean(r, 'highSecurity', false);

  r.checkKeys('listen', [...LISTEN_TRANSPORTS, 'internal', 'federation']);
  const listen: ParleyConfig['listen'] = {};
  if (r.hasSection('listen')) {
    for (const transport of [...LISTEN_TRANSPORTS, 'internal', 'federation'] as const) {
      const hp = readOptionalHostPort(r, `listen.${transport}`);
      if (hp) listen[transport] = hp;
    }
  } else if (highSecurity) {
    listen.tls = { ...DEFAULT_SECURE_LISTEN.tls };
  } else {
    listen.udp = { ...DEFAULT_LISTEN.udp };
    listen.tcp = { ...DEFAULT_LISTEN.tcp };
    listen.ws = { ...DEFAULT_LISTEN.ws };
  }
  if (Object.keys(listen).length === 0) {
    throw new ConfigError(
      'no transport to listen on: set at least one of udp, tcp, tls, ws, wss',
      'listen',
      r.get('listen')?.source.label,
    );
  }
  if (highSecurity) {
    for (const plain of ['udp', 'tcp', 'ws'] as const) {
      if (listen[plain]) {
        throw new ConfigError(
          `highSecurity accepts TLS and WSS only; remove listen.${plain}`,
          `listen.${plain}`,
          r.get(`listen.${plain}`)?.source.label ??
            r.get('highSecurity')?.source.label ??
            r.get('security')?.source.label,
        );
      }
    }
  }

  const advertise = readOptionalString(r, 'advertise');
  if (advertise !== undefined && !ADVERTISE_RE.test(advertise)) {
    throw new ConfigError(
      `${JSON.stringify(advertise)} is not a host or host:port`,
      'advertise',
      r.get('advertise')?.source.label,
    );
  }

  r.checkKeys('tls', ['cert', 'key', 'ca', 'requireClientCert']);
  let tls: ParleyConfig['tls'];
  if (r.hasSection('tls')) {
    const cert = readRequiredFile(r, 'tls.cert');
    const key = readRequiredFile(r, 'tls.key');
    const caAt = r.get('tls.ca');
    const ca = caAt ? readFile(r, 'tls.ca') : undefined;
    tls = { cert, key, requireClientCert: readBoolean(r, 'tls.requireClientCert', false) };
    if (ca) tls.ca = ca;
  }
  for (const secure of ['tls', 'wss', 'federation'] as const) {
    if (listen[secure] && !tls) {
      throw new ConfigError(
        'a TLS listener needs a certificate: add tls.cert and tls.key to parley.yaml (`parley certs issue` makes them; `parley init --tls-cert --tls-key` writes them in)',
        `listen.${secure}`,
        r.get(`listen.${secure}`)?.source.label ?? r.get('highSecurity')?.source.label,
      );
    }
  }

  r.checkKeys('database', ['dataDir', 'url']);
  const dataDirAt = r.get('database.dataDir');
  const dataDir = resolvePath(readString(r, 'database.dataDir', DEFAULT_DATA_DIR), dataDirAt?.source);
  const url = readOptionalString(r, 'database.url');
  if (url !== undefined && !POSTGRES_URL_RE.test(url)) {
    // Never echo the URL: it may carry a password.
    throw new ConfigError(
      'must be a postgres:// or postgresql:// URL',
      'database.url',
      r.get('database.url')?.source.label,
    );
  }
  if (role === 'frontend' && url === undefined) {
    throw new ConfigError(
      'a frontend shares its pool state through PostgreSQL: set database.url (or PARLEY_DATABASE_URL)',
      'database.url',
      r.get('role')?.source.label,
    );
  }
  const database: ParleyConfig['database'] = { dataDir };
  if (url !== undefined) database.url = url;

  const http = readOptionalHostPort(r, 'http') ?? { ...DEFAULT_HTTP };

  r.checkKeys('log', ['level', 'format']);
  const log = {
    level: readEnum(r, 'log.level', LOG_LEVELS, 'info'),
    format: readEnum(r, 'log.format', LOG_FORMATS, 'auto'),
  };

  r.checkKeys('limits', [
    'maxConnectionsPerAddress',
    'maxConnections',
    'headerTimeoutMs',
    'idleTimeoutMs',
    'trustedProxies',
    'maxTransactions',
  ]);
  const limits: ParleyConfig['limits'] = {
    maxConnectionsPerAddress: readWholeNumber(r, 'limits.maxConnectionsPerAddress') ?? 100,
    headerTimeoutMs: readWholeNumber(r, 'limits.headerTimeoutMs') ?? 5_000,
    idleTimeoutMs: readWholeNumber(r, 'limits.idleTimeoutMs') ?? 60_000,
    trustedProxies: readAddressBlocks(r, 'limits.trustedProxies'),
    maxTransactions: readWholeNumber(r, 'limits.maxTransactions') ?? 20_000,
  };
  const maxConnections = readWholeNumber(r, 'limits.maxConnections');
  if (maxConnections !== undefined) limits.maxConnections = maxConnections;

  r.checkKeys('federation', ['dnsServers', 'edge']);
  const federation: ParleyConfig['federation'] = { dnsServers: readDnsServers(r, 'federation.dnsServers') };
  const federationEdge = readOptionalSipUri(r, 'federation.edge');
  if (federationEdge) federation.edge = federationEdge;
  const trustedPeers = readAddressBlocks(r, 'trustedPeers');
  r.checkKeys('homes', ['director']);
  const homes: ParleyConfig['homes'] = {};
  const homesDirector = readOptionalSipUri(r, 'homes.director');
  if (homesDirector) homes.director = homesDirector;

  r.checkKeys('edge', [
    'next',
    'requestsPerSecond',
    'burst',
    'unknownRequestsPerSecond',
    'partnerRequestsPerSecond',
    'partnerBurst',
    'maxMessageSize',
  ]);
  const edge: EdgeConfig = {
    requestsPerSecond: readWholeNumber(r, 'edge.requestsPerSecond') ?? 20,
    burst: readWholeNumber(r, 'edge.burst') ?? 40,
    unknownRequestsPerSecond: readWholeNumber(r, 'edge.unknownRequestsPerSecond') ?? 5,
    partnerRequestsPerSecond: readWholeNumber(r, 'edge.partnerRequestsPerSecond') ?? 500,
    partnerBurst: readWholeNumber(r, 'edge.partnerBurst') ?? 1000,
    maxMessageSize: readWholeNumber(r, 'edge.maxMessageSize') ?? 16_384,
  };
  const next = readOptionalSipUri(r, 'edge.next');
  if (next) edge.next = next;
  // security: high: servers reach each other over mutual TLS only (docs/config.md).
  if (highSecurity) {
    for (const key of ['federation.edge', 'homes.director', 'edge.next']) {
      const uri = readOptionalString(r, key);
      if (uri !== undefined && !/^sips:/i.test(uri) && !/;transport=tls(?:;|$)/i.test(uri)) {
        throw new ConfigError(
          `${JSON.stringify(uri)}: security: high reaches other servers over mutual TLS only; use sips: or ;transport=tls`,
          key,
          r.get(key)?.source.label,
        );
      }
    }
  }
  // edge.next and listen.internal are required when an edge starts (src/roles/edge.ts), not
  // here: `parley init --role edge` writes a first file the administrator completes.
  if (role !== 'edge') {
    for (const edgeOnly of ['internal', 'federation'] as const) {
      if (listen[edgeOnly]) {
        throw new ConfigError(
          `listen.${edgeOnly} belongs to the edge role`,
          `listen.${edgeOnly}`,
          r.get(`listen.${edgeOnly}`)?.source.label,
        );
      }
    }
  }

  r.checkKeys('registrar', [
    'minExpires',
    'maxExpires',
    'defaultExpires',
    'digestAlgorithms',
    'connectionGraceSeconds',
  ]);
  const registrar = {
    minExpires: readSeconds(r, 'registrar.minExpires', 60),
    maxExpires: readSeconds(r, 'registrar.maxExpires', 7200),
    defaultExpires: readSeconds(r, 'registrar.defaultExpires', 3600),
    digestAlgorithms: readDigestAlgorithms(r, 'registrar.digestAlgorithms'),
    connectionGraceSeconds: readSeconds(r, 'registrar.connectionGraceSeconds', 5),
  };
  checkExpiryOrder(r, 'registrar', registrar);

  r.checkKeys('presence', [
    'maxExpires',
    'defaultExpires',
    'allowSameDomain',
    'minNotifyInterval',
    'maxSubscriptionsPerUser',
    'maxSubscriptionsPerEndpoint',
    'maxContactsPerUser',
  ]);
  // RFC 3856 6.4: the default presence subscription duration is 3600 seconds.
  const presenceExpires = {
    minExpires: 1,
    maxExpires: readSeconds(r, 'presence.maxExpires', 7200),
    defaultExpires: readSeconds(r, 'presence.defaultExpires', 3600),
  };
  checkExpiryOrder(r, 'presence', presenceExpires);
  const presence = {
    maxExpires: presenceExpires.maxExpires,
    defaultExpires: presenceExpires.defaultExpires,
    allowSameDomain: readBoolean(r, 'presence.allowSameDomain', true),
    minNotifyInterval: readInterval(r, 'presence.minNotifyInterval', 0),
    maxSubscriptionsPerUser: readCount(r, 'presence.maxSubscriptionsPerUser', 3000),
    maxSubscriptionsPerEndpoint: readCount(r, 'presence.maxSubscriptionsPerEndpoint', 1000),
    maxContactsPerUser: readCount(r, 'presence.maxContactsPerUser', 1000),
  };
  if (presence.maxSubscriptionsPerEndpoint > presence.maxSubscriptionsPerUser) {
    throw new ConfigError(
      `maxSubscriptionsPerEndpoint (${presence.maxSubscriptionsPerEndpoint}) is more than maxSubscriptionsPerUser (${presence.maxSubscriptionsPerUser})`,
      'presence.maxSubscriptionsPerEndpoint',
      r.get('presence.maxSubscriptionsPerEndpoint')?.source.label ??
        r.get('presence.maxSubscriptionsPerUser')?.source.label ??
        'defaults',
    );
  }

  r.checkKeys('auth', [
    'nonceLifetimeSeconds',
    'maxFailures',
    'userMaxFailures',
    'addressMaxFailures',
    'failureWindowSeconds',
    'lockoutSeconds',
    'maxLockoutSeconds',
  ]);
  // Defaults: five tries per user and address in five minutes, then 30 s, 60 s ... at most
  // 5 minutes; never long for the real user, whose other addresses are not locked at all.
  const auth = {
    nonceLifetimeSeconds: readSeconds(r, 'auth.nonceLifetimeSeconds', 300),
    maxFailures: readCount(r, 'auth.maxFailures', AUTH_DEFAULTS.maxFailures),
    userMaxFailures: readCount(r, 'auth.userMaxFailures', AUTH_DEFAULTS.userMaxFailures),
    addressMaxFailures: readCount(r, 'auth.addressMaxFailures', AUTH_DEFAULTS.addressMaxFailures),
    failureWindowSeconds: readSeconds(r, 'auth.failureWindowSeconds', AUTH_DEFAULTS.failureWindowSeconds),
    lockoutSeconds: readSeconds(r, 'auth.lockoutSeconds', AUTH_DEFAULTS.lockoutSeconds),
    maxLockoutSeconds: readSeconds(r, 'auth.maxLockoutSeconds', AUTH_DEFAULTS.maxLockoutSeconds),
  };
  if (auth.lockoutSeconds > auth.maxLockoutSeconds) {
    throw new ConfigError(
      `lockoutSeconds (${auth.lockoutSeconds}) is greater than maxLockoutSeconds (${auth.maxLockoutSeconds})`,
      'auth.lockoutSeconds',
      r.get('auth.lockoutSeconds')?.source.label ?? r.get('auth.maxLockoutSeconds')?.source.label,
    );
  }

  r.checkKeys('archiving', [
    'enabled',
    'users',
    'groups',
    'retentionDays',
    'onFailure',
    'batchSize',
    'flushMs',
  ]);
  const archiving: ArchivingConfig = {
    enabled: readBoolean(r, 'archiving.enabled', false),
    users: readAors(r, 'archiving.users'),
    groups: readGroupNames(r, 'archiving.groups'),
    // 0 keeps messages forever.
    retentionDays:
      r.get('archiving.retentionDays')?.value === 0
        ? 0
        : (readWholeNumber(r, 'archiving.retentionDays') ?? 365),
    onFailure: readEnum(r, 'archiving.onFailure', ['block', 'continue'] as const, 'continue'),
    batchSize: readWholeNumber(r, 'archiving.batchSize') ?? 500,
    flushMs: readWholeNumber(r, 'archiving.flushMs') ?? 100,
  };
  if (archiving.batchSize < 1)
    throw new ConfigError(
      'must be at least 1',
      'archiving.batchSize',
      r.get('archiving.batchSize')?.source.label,
    );

  r.checkKeys('server', ['workers', 'semiSpaceMb']);
  const workers = readCount(r, 'server.workers', 1);
  if (workers > 1 && role !== 'standard') {
    throw new ConfigError(
      `several workers are for the standard role; a ${role} scales with more servers behind a load balancer`,
      'server.workers',
      r.get('server.workers')?.source.label,
    );
  }
  if (workers > 64)
    throw new ConfigError('at most 64', 'server.workers', r.get('server.workers')?.source.label);
  if (workers > 1 && database.url !== undefined) {
    // The workers share the embedded store their main process serves from the data folder;
    // a server on PostgreSQL would silently have used that folder instead of its database.
    throw new ConfigError(
      'several workers share the embedded store; a server on PostgreSQL (database.url) scales as a pool of front-ends instead',
      'server.workers',
      r.get('server.workers')?.source.label,
    );
  }

  const cfg: ParleyConfig = {
    domain,
    domains,
    role,
    serverId,
    listen,
    highSecurity,
    security: highSecurity ? 'high' : 'standard',
    database,
    http,
    log,
    limits,
    registrar,
    presence,
    auth,
    federation,
    trustedPeers,
    homes,
    edge,
    archiving,
    server: { workers, semiSpaceMb: readSemiSpaceMb(r) },
  };
  if (home !== undefined) cfg.home = home;
  if (advertise !== undefined) cfg.advertise = advertise;
  if (tls) cfg.tls = tls;
  const directory = r.get('directory');
  if (directory) cfg.directory = directory.value;
  return cfg;
}

/**
 * `domains:` (a list, the first the default) or `domain:` (one). A --domain flag replaces
 * the file's list. The SIP core serves one realm today (registrar, proxy, presence and edge
 * take config.domain), so a list of several is refused rather than half served.
 */
function readDomains(r: LayeredReader): string[] {
  const one = r.get('domain');
  const many = r.get('domains');
  if (one && many && one.source === many.source) {
    throw new ConfigError('set domains (a list) or domain (one), not both', 'domain', one.source.label);
  }
  let list: unknown[];
  let at: { value: unknown; source: Source } | undefined;
  let key: string;
  if (many && !(one && one.source.label === 'flags')) {
    at = many;
    key = 'domains';
    list = Array.isArray(many.value) ? many.value : [many.value];
    if (list.length === 0) throw new ConfigError('lists no domain', key, at.source.label);
  } else {
    at = one;
    key = 'domain';
    list = [one && one.value !== null ? one.value : DEFAULT_DOMAIN];
  }
  const domains = list.map((v) => (typeof v === 'string' ? v.trim().toLowerCase() : v));
  for (const d of domains) {
    if (typeof d !== 'string' || !DOMAIN_RE.test(d)) {
      throw new ConfigError(`${JSON.stringify(d)} is not a DNS domain name`, key, at?.source.label);
    }
  }
  if (new Set(domains).size !== domains.length) {
    throw new ConfigError('lists a domain twice', key, at?.source.label);
  }
  if (domains.length > 1) {
    throw new ConfigError(
      `several domains (${domains.join(', ')}) are not served yet: one server serves one domain (its digest realm); list one`,
      key,
      at?.source.label,
    );
  }
  return domains as string[];
}

function checkExpiryOrder(
  r: LayeredReader,
  section: string,
  e: { minExpires: number; maxExpires: number; defaultExpires: number },
): void {
  if (e.minExpires > e.maxExpires) {
    throw new ConfigError(
      `minExpires (${e.minExpires}) is greater than maxExpires (${e.maxExpires})`,
      `${section}.minExpires`,
      r.get(`${section}.minExpires`)?.source.label ?? r.get(`${section}.maxExpires`)?.source.label,
    );
  }
  if (e.defaultExpires < e.minExpires || e.defaultExpires > e.maxExpires) {
    throw new ConfigError(
      `${e.defaultExpires} is outside ${e.minExpires}..${e.maxExpires}`,
      `${section}.defaultExpires`,
      r.get(`${section}.defaultExpires`)?.source.label ?? r.get(`${section}.maxExpires`)?.source.label,
    );
  }
}

/** A sip: or sips: URI naming a host (a next hop), e.g. `sip:edge.internal:5070;transport=tcp`. */
function readOptionalSipUri(r: LayeredReader, key: string): string | undefined {
  const text = readOptionalString(r, key);
  if (text === undefined) return undefined;
  if (!/^sips?:(?:[^@;]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?(?:;[^;]+)*$/.test(text)) {
    throw new ConfigError(
      `${JSON.stringify(text)} is not a SIP URI of a host (sip:host[:port][;transport=tcp|tls])`,
      key,
      r.get(key)?.source.label,
    );
  }
  return text;
}

function readOptionalString(r: LayeredReader, key: string): string | undefined {
  const at = r.get(key);
  if (!at || at.value === null) return undefined;
  if (typeof at.value === 'number') return String(at.value);
  if (typeof at.value !== 'string' || at.value.trim() === '') {
    throw new ConfigError(`${JSON.stringify(at.value)} is not a non-empty string`, key, at.source.label);
  }
  return at.value.trim();
}

function readString(r: LayeredReader, key: string, fallback: string): string {
  return readOptionalString(r, key) ?? fallback;
}

function readEnum<T extends string>(r: LayeredReader, key: string, allowed: readonly T[], fallback: T): T {
  const at = r.get(key);
  if (!at || at.value === null) return fallback;
  if (typeof at.value !== 'string' || !allowed.includes(at.value as T)) {
    throw new ConfigError(
      `${JSON.stringify(at.value)} is not one of ${allowed.join(', ')}`,
      key,
      at.source.label,
    );
  }
  return at.value as T;
}

/**
 * Digest challenges to offer, most preferred first (RFC 8760). Default one MD5 challenge:
 * JsSIP and SIPp cannot answer two (see README, "One digest challenge").
 */
function readDigestAlgorithms(r: LayeredReader, key: string): DigestAlgorithmName[] {
  const at = r.get(key);
  if (!at || at.value === null) return ['MD5'];
  const list = Array.isArray(at.value) ? at.value : [at.value];
  if (
    list.length === 0 ||
    list.some((v) => v !== 'MD5' && v !== 'SHA-256') ||
    new Set(list).size !== list.length
  ) {
    throw new ConfigError(
      `${JSON.stringify(at.value)} must list MD5 and/or SHA-256, once each`,
      key,
      at.source.label,
    );
  }
  return list as DigestAlgorithmName[];
}

function readBoolean(r: LayeredReader, key: string, fallback: boolean): boolean {
  const at = r.get(key);
  if (!at || at.value === null) return fallback;
  if (typeof at.value !== 'boolean') {
    throw new ConfigError(`${JSON.stringify(at.value)} is not true or false`, key, at.source.label);
  }
  return at.value;
}

function readWholeNumber(r: LayeredReader, key: string): number | undefined {
  const at = r.get(key);
  if (!at || at.value === null) return undefined;
  const v = typeof at.value === 'string' && /^\d+$/.test(at.value) ? Number(at.value) : at.value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) {
    throw new ConfigError(
      `${JSON.stringify(at.value)} is not a whole number (1 or more)`,
      key,
      at.source.label,
    );
  }
  return v;
}

/** DNS servers as node:dns takes them: an IP address with an optional port (`10.0.0.53`, `127.0.0.1:5353`, `[::1]:53`). */
function readDnsServers(r: LayeredReader, key: string): string[] {
  const at = r.get(key);
  if (!at || at.value === null) return [];
  const list = Array.isArray(at.value) ? at.value : [at.value];
  return list.map((entry: unknown) => {
    const text = typeof entry === 'string' ? entry.trim() : '';
    const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(text) ?? /^([0-9a-fA-F:]+)$/.exec(text);
    const host = m?.[1] ?? m?.[2];
    if (!host || isIP(host) === 0 || (m?.[3] !== undefined && Number(m[3]) > 65535)) {
      throw new ConfigError(
        `${JSON.stringify(entry)} is not a DNS server address (IP[:port])`,
        key,
        at.source.label,
      );
    }
    return text;
  });
}

/** A list of IP addresses and CIDR blocks (`10.0.0.0/8`, `fd00::/8`). */
function readAddressBlocks(r: LayeredReader, key: string): string[] {
  const at = r.get(key);
  if (!at || at.value === null) return [];
  const list = Array.isArray(at.value) ? at.value : [at.value];
  for (const entry of list) {
    const [address, prefix, extra] = typeof entry === 'string' ? entry.trim().split('/') : [];
    const family = address === undefined ? 0 : isIP(address);
    const max = family === 6 ? 128 : 32;
    if (
      family === 0 ||
      extra !== undefined ||
      (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= max))
    ) {
      throw new ConfigError(
        `${JSON.stringify(entry)} is not an IP address or CIDR block`,
        key,
        at.source.label,
      );
    }
  }
  return list.map((entry: string) => entry.trim());
}

/** A list of user addresses (user@domain), lower-cased. */
function readAors(r: LayeredReader, key: string): string[] {
  const at = r.get(key);
  if (!at || at.value === null) return [];
  const list = Array.isArray(at.value) ? at.value : [at.value];
  for (const entry of list) {
    if (typeof entry !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(entry.trim()))
      throw new ConfigError(
        `${JSON.stringify(entry)} is not a user address (user@domain)`,
        key,
        at.source.label,
      );
  }
  return list.map((entry: string) => entry.trim().toLowerCase());
}

/** Directory group names (their cn), compared without case. */
function readGroupNames(r: LayeredReader, key: string): string[] {
  const at = r.get(key);
  if (!at || at.value === null) return [];
  const list = Array.isArray(at.value) ? at.value : [at.value];
  for (const entry of list) {
    if (typeof entry !== 'string' || entry.trim() === '')
      throw new ConfigError(
        `${JSON.stringify(entry)} is not a group name (the group's cn)`,
        key,
        at.source.label,
      );
  }
  return list.map((entry: string) => entry.trim().toLowerCase());
}

function readSeconds(r: LayeredReader, key: string, fallback: number): number {
  const at = r.get(key);
  if (!at || at.value === null) return fallback;
  const v = typeof at.value === 'string' && /^\d+$/.test(at.value) ? Number(at.value) : at.value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) {
    throw new ConfigError(
      `${JSON.stringify(at.value)} is not a whole number of seconds (1 or more)`,
      key,
      at.source.label,
    );
  }
  return v;
}

/** A duration in seconds that may be 0 (off) or fractional (0.5), at most an hour. */
function readInterval(r: LayeredReader, key: string, fallback: number): number {
  const at = r.get(key);
  if (!at || at.value === null) return fallback;
  const v = typeof at.value === 'string' && /^\d+(\.\d+)?$/.test(at.value) ? Number(at.value) : at.value;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 3600) {
    throw new ConfigError(
      `${JSON.stringify(at.value)} is not a number of seconds from 0 to 3600`,
      key,
      at.source.label,
    );
  }
  return v;
}

/** server.semiSpaceMb: 0 (V8's own) or 1..1024 MiB. */
function readSemiSpaceMb(r: LayeredReader): number {
  const key = 'server.semiSpaceMb';
  if (r.get(key)?.value === 0 || r.get(key)?.value === '0') return 0;
  const mb = readWholeNumber(r, key) ?? DEFAULT_SEMI_SPACE_MB;
  if (mb > 1024) throw new ConfigError('at most 1024 (MiB)', key, r.get(key)?.source.label);
  return mb;
}

function readCount(r: LayeredReader, key: string, fallback: number): number {
  const at = r.get(key);
  if (!at || at.value === null) return fallback;
  const v = typeof at.value === 'string' && /^\d+$/.test(at.value) ? Number(at.value) : at.value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1_000_000) {
    throw new ConfigError(
      `${JSON.stringify(at.value)} is not a whole number from 1 to 1000000`,
      key,
      at.source.label,
    );
  }
  return v;
}

function readOptionalHostPort(r: LayeredReader, key: string): HostPort | undefined {
  const at = r.get(key);
  if (!at || at.value === null || at.value === false) return undefined;
  const v = at.value;
  if (typeof v === 'string') return parseHostPort(v, key, at.source.label);
  if (typeof v === 'number') return parseHostPort(String(v), key, at.source.label);
  if (typeof v === 'object' && !Array.isArray(v)) {
    const { host, port } = v as { host?: unknown; port?: unknown };
    if (typeof host === 'string' && (typeof port === 'number' || typeof port === 'string')) {
      const shown = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
      return parseHostPort(`${shown}:${port}`, key, at.source.label);
    }
  }
  throw new ConfigError(`${JSON.stringify(v)} is not host:port`, key, at.source.label);
}

function readFile(r: LayeredReader, key: string): string {
  const at = r.get(key)!;
  if (typeof at.value !== 'string' || at.value.trim() === '') {
    throw new ConfigError(`${JSON.stringify(at.value)} is not a file path`, key, at.source.label);
  }
  const path = resolvePath(at.value.trim(), at.source);
  if (!existsSync(path)) throw new ConfigError(`file ${path} does not exist`, key, at.source.label);
  return path;
}

function readRequiredFile(r: LayeredReader, key: string): string {
  if (!r.get(key)) {
    const section = key.split('.')[0];
    throw new ConfigError('missing (a file path is required)', key, r.get(section)?.source.label);
  }
  return readFile(r, key);
}

/** Relative paths in a file are relative to that file, so a config works from any cwd. */
function resolvePath(path: string, source: Source | undefined): string {
  if (isAbsolute(path)) return path;
  return resolve(source?.baseDir ?? process.cwd(), path);
}

/**
 * Parses `host:port`, `[v6]:port`, `:port` or `port` (the last two listen on all IPv4
 * addresses). Port 0 is allowed: the system picks an ephemeral port (tests rely on it).
 */
export function parseHostPort(text: string, key: string, file?: string): HostPort {
  const bad = (why = 'is not host:port') => new ConfigError(`${JSON.stringify(text)} ${why}`, key, file);
  const s = text.trim();
  let host: string;
  let portText: string;
  if (/^\d+$/.test(s)) {
    host = '0.0.0.0';
    portText = s;
  } else if (s.startsWith('[')) {
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(s);
    if (!m) throw bad('is not [IPv6]:port');
    if (isIP(m[1]) !== 6) throw bad('does not hold an IPv6 address in brackets');
    host = m[1];
    portText = m[2];
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) throw bad();
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(':')) throw bad('is ambiguous: write an IPv6 address in brackets, e.g. [::1]:5060');
    if (host === '') host = '0.0.0.0';
    if (isIP(host) === 0 && !DOMAIN_RE.test(host.toLowerCase()) && host !== 'localhost') throw bad();
  }
  if (!/^\d{1,5}$/.test(portText)) throw bad();
  const port = Number(portText);
  if (port > 65535) throw bad('has a port above 65535');
  return { host, port };
}

/** A database URL fit for output: any password replaced by `***`. */
export function redactDatabaseUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^/@:]*):[^/@]*@/, '$1:***@');
}

/** `advertise`: a host name, an IPv4 address or an [IPv6] address, then an optional :port. */
const ADVERTISE_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;

/** `advertise` as a host (an IPv6 address keeps its brackets) and an optional port. */
export function parseAdvertise(text: string | undefined): { host: string; port?: number } | undefined {
  if (!text) return undefined;
  const m = ADVERTISE_RE.exec(text);
  if (!m) return { host: text };
  return { host: m[1], port: m[2] ? Number(m[2]) : undefined };
}

/** Formats a HostPort the way parseHostPort reads it back. */
export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * Writes a parley.yaml (used by `parley init`). HostPorts become `host:port` strings; the
 * file is written whole through a temporary file so a crash never leaves half a config.
 * A database URL may carry a password, so such a file is readable by its owner only.
 */
export function writeConfig(path: string, cfg: DeepPartial<ParleyConfig>): void {
  const out: Record<string, unknown> = {};
  for (const key of TOP_LEVEL_KEYS) {
    const value = (cfg as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (key === 'listen') {
      const listen: Record<string, string> = {};
      for (const t of LISTEN_TRANSPORTS) {
        const hp = (value as Record<string, HostPort | undefined>)[t];
        if (hp) listen[t] = formatHostPort(hp);
      }
      out.listen = listen;
    } else if (key === 'http') {
      out.http = formatHostPort(value as HostPort);
    } else {
      out[key] = stripUndefined(value);
    }
  }
  const text = `# Parley server configuration. Keys are described in docs/config.md.\n${YAML.stringify(out)}`;
  const hasSecret = typeof cfg.database?.url === 'string' && /\/\/[^/@]*:[^/@]*@/.test(cfg.database.url);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: hasSecret ? 0o600 : 0o644 });
  renameSync(tmp, path);
}

function stripUndefined(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = stripUndefined(v);
  return out;
}
