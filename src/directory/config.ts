/**
 * The `directory` section of parley.yaml, validated once. Errors name the file and the key
 * (directory.forests[1].bindPasswordEnv) so an operator can fix the file without guessing.
 * Bind passwords are never inline: a file (mode 0600, read at connect time) or an
 * environment variable name.
 */

export type PasswordSource = { file: string } | { env: string };

export interface BindConfig {
  url: string;
  bindDn: string;
  password: PasswordSource;
}

/** How "disabled" is read from a source user. */
export type DisabledRule =
  | { kind: 'none' }
  /** Disabled when the attribute has one of these values (case-insensitive), e.g. employeeType=disabled. */
  | { kind: 'values'; attribute: string; values: string[] }
  /** Disabled when the attribute is present at all, e.g. pwdAccountLockedTime. */
  | { kind: 'present'; attribute: string }
  /** Active Directory: userAccountControl bit 2 (ACCOUNTDISABLE). */
  | { kind: 'ad-uac' };

export interface AttributeMapping {
  alias: string;
  displayName: string;
  givenName?: string;
  surname?: string;
  mail?: string;
  disabled: DisabledRule;
}

export interface ForestConfig extends BindConfig {
  name: string;
  type: 'openldap' | 'ad';
  baseDn: string;
  /** LDAP filter (RFC 4515) selecting the users to sync; written by the operator, not escaped. */
  filter: string;
  /** parleyHome written on this forest's contacts. */
  home?: string;
  pageSize: number;
  /**
   * How changes are found between runs. `content-sync`: RFC 4533 with a cookie (OpenLDAP's
   * syncprov), deletes included; `watermark`: modifyTimestamp / uSNChanged plus a read of
   * every anchor to find deletes; `auto` (default): content-sync where the server offers it.
   */
  changeTracking: 'auto' | 'content-sync' | 'watermark';
  mapping: AttributeMapping;
}

export interface CentralConfig extends BindConfig {
  baseDn: string;
  contactContainer: string;
  sipDomain: string;
  /** Central users: never shadowed by a contact. */
  userFilter: string;
  /** Central users' alias attribute; alias@sipDomain is theirs even before SIP-enabling. */
  aliasAttribute: string;
  pageSize: number;
  /** Only for `parley directory prepare` on OpenLDAP: an identity allowed to write cn=config. */
  schemaAdmin?: { bindDn: string; password: PasswordSource };
}

export interface SyncPolicy {
  /** Seconds a contact stays disabled before it is deleted. */
  deleteGraceSeconds: number;
  /** Refuse a forest's removals (disables of gone users + deletes) past this count... */
  maxDeletes: number;
  /** ...or past this share of the forest's contacts. */
  maxDeletePercent?: number;
  /** A lock whose heartbeat is older than this is taken over. */
  lockStaleSeconds: number;
}

export interface DirectoryConfig {
  central: CentralConfig;
  forests: ForestConfig[];
  sync: SyncPolicy;
  replicate: { intervalSeconds: number; prune: boolean };
}

export class DirectoryConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
    readonly file?: string,
  ) {
    super(`${file ? `${file}: ` : ''}${key}: ${message}`);
    this.name = 'DirectoryConfigError';
  }
}

type Raw = Record<string, unknown>;

class Reader {
  constructor(
    private readonly file: string | undefined,
    readonly path: string,
    readonly raw: Raw,
  ) {}

  fail(key: string, message: string): never {
    throw new DirectoryConfigError(key ? `${this.path}.${key}` : this.path, message, this.file);
  }

  child(key: string): Reader {
    const v = this.raw[key];
    if (!isObject(v)) this.fail(key, 'must be a mapping');
    return new Reader(this.file, `${this.path}.${key}`, v);
  }

  optionalChild(key: string): Reader | undefined {
    return this.raw[key] === undefined ? undefined : this.child(key);
  }

  list(key: string): Reader[] {
    const v = this.raw[key];
    if (!Array.isArray(v) || v.length === 0) this.fail(key, 'must be a non-empty list');
    return v.map((item, i) => {
      if (!isObject(item))
        throw new DirectoryConfigError(`${this.path}.${key}[${i}]`, 'must be a mapping', this.file);
      return new Reader(this.file, `${this.path}.${key}[${i}]`, item);
    });
  }

  string(key: string, fallback?: string): string {
    const v = this.raw[key];
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string' || v.trim() === '') this.fail(key, 'is required (a non-empty string)');
    return v.trim();
  }

  optionalString(key: string): string | undefined {
    return this.raw[key] === undefined ? undefined : this.string(key);
  }

  number(key: string, fallback: number, min = 0): number {
    const v = this.raw[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) this.fail(key, `must be a number >= ${min}`);
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') this.fail(key, 'must be true or false');
    return v;
  }

  duration(key: string, fallback: string): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v === 'number' && v >= 0) return v;
    const seconds = typeof v === 'string' ? parseDuration(v) : undefined;
    if (seconds === undefined)
      this.fail(key, 'must be a duration like 30d, 12h, 15m, 90s or a number of seconds');
    return seconds;
  }

  password(prefix = 'bindPassword'): PasswordSource {
    if (this.raw[prefix] !== undefined) {
      this.fail(prefix, `inline passwords are not accepted; use ${prefix}File or ${prefix}Env`);
    }
    const file = this.optionalString(`${prefix}File`);
    const env = this.optionalString(`${prefix}Env`);
    if (file && env) this.fail(`${prefix}File`, `give ${prefix}File or ${prefix}Env, not both`);
    if (file) return { file };
    if (env) return { env };
    return this.fail(`${prefix}File`, `a bind password source is required (${prefix}File or ${prefix}Env)`);
  }
}

function isObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$/.exec(text);
  if (!m) return undefined;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

function ldapUrl(r: Reader): string {
  const url = r.string('url');
  if (!/^ldaps?:\/\/[^\s/]+\/?$/i.test(url))
    r.fail('url', `must be ldap://host[:port] or ldaps://host[:port], got '${url}'`);
  return url.replace(/\/$/, '');
}

function filterText(r: Reader, key: string, fallback: string): string {
  const f = r.string(key, fallback);
  if (!f.startsWith('(') || !f.endsWith(')'))
    r.fail(key, 'must be a parenthesised LDAP filter, e.g. (objectClass=inetOrgPerson)');
  return f;
}

function parseDisabled(r: Reader, type: 'openldap' | 'ad'): DisabledRule {
  const raw = r.raw.disabled;
  if (raw === undefined) return type === 'ad' ? { kind: 'ad-uac' } : { kind: 'none' };
  if (raw === 'userAccountControl') return { kind: 'ad-uac' };
  if (raw === false || raw === 'none') return { kind: 'none' };
  const d = r.child('disabled');
  const attribute = d.string('attribute');
  if (d.raw.present === true) return { kind: 'present', attribute };
  const values = d.raw.values ?? d.raw.value;
  const list = Array.isArray(values) ? values : [values];
  if (list.length === 0 || list.some((v) => typeof v !== 'string' || v === '')) {
    d.fail('values', 'must be a string or a list of strings (or set present: true)');
  }
  return { kind: 'values', attribute, values: (list as string[]).map((v) => v.toLowerCase()) };
}

function changeTracking(r: Reader, type: 'openldap' | 'ad'): ForestConfig['changeTracking'] {
  const v = r.string('changeTracking', 'auto');
  if (v !== 'auto' && v !== 'content-sync' && v !== 'watermark')
    r.fail('changeTracking', "must be 'auto', 'content-sync' or 'watermark'");
  // Active Directory has DirSync instead of RFC 4533; Parley reads it by uSNChanged.
  if (v === 'content-sync' && type === 'ad')
    r.fail('changeTracking', "'content-sync' needs an OpenLDAP forest");
  return v;
}

function parseForest(r: Reader, names: Set<string>): ForestConfig {
  const name = r.string('name');
  if (!/^[a-z0-9][a-z0-9_-]{0,31}$/i.test(name))
    r.fail('name', 'must be letters, digits, - or _ (at most 32)');
  if (names.has(name.toLowerCase()) || name.toLowerCase() === 'central')
    r.fail('name', `'${name}' is used twice`);
  names.add(name.toLowerCase());
  const type = r.string('type', 'openldap');
  if (type !== 'openldap' && type !== 'ad') r.fail('type', "must be 'openldap' or 'ad'");
  const m = r.optionalChild('mapping') ?? new Reader(undefined, `${r.path}.mapping`, {});
  return {
    name,
    type,
    url: ldapUrl(r),
    bindDn: r.string('bindDn'),
    password: r.password(),
    baseDn: r.string('baseDn'),
    filter: filterText(
      r,
      'filter',
      type === 'ad' ? '(&(objectCategory=person)(objectClass=user))' : '(objectClass=inetOrgPerson)',
    ),
    home: r.optionalString('home'),
    pageSize: r.number('pageSize', 500, 1),
    changeTracking: changeTracking(r, type),
    mapping: {
      alias: m.string('alias', type === 'ad' ? 'sAMAccountName' : 'uid'),
      displayName: m.string('displayName', 'displayName'),
      givenName: m.string('givenName', 'givenName'),
      surname: m.string('surname', 'sn'),
      mail: m.string('mail', 'mail'),
      disabled: parseDisabled(m, type),
    },
  };
}

export function parseDirectoryConfig(raw: unknown, opts: { file?: string } = {}): DirectoryConfig {
  if (!isObject(raw)) throw new DirectoryConfigError('directory', 'must be a mapping', opts.file);
  const root = new Reader(opts.file, 'directory', raw);
  const c = root.child('central');
  const baseDn = c.string('baseDn');
  const contactContainer = c.string('contactContainer');
  if (!contactContainer.toLowerCase().endsWith(baseDn.toLowerCase())) {
    c.fail('contactContainer', `must be below baseDn (${baseDn})`);
  }
  const sipDomain = c.string('sipDomain').toLowerCase();
  if (!/^[a-z0-9.-]+\.[a-z]{2,}$/.test(sipDomain)) c.fail('sipDomain', `'${sipDomain}' is not a domain name`);
  const admin = c.optionalChild('schemaAdmin');
  const central: CentralConfig = {
    url: ldapUrl(c),
    bindDn: c.string('bindDn'),
    password: c.password(),
    baseDn,
    contactContainer,
    sipDomain,
    userFilter: filterText(c, 'userFilter', '(objectClass=inetOrgPerson)'),
    aliasAttribute: c.string('aliasAttribute', 'uid'),
    pageSize: c.number('pageSize', 500, 1),
    schemaAdmin: admin ? { bindDn: admin.string('bindDn'), password: admin.password() } : undefined,
  };
  const names = new Set<string>();
  const forests = root.list('forests').map((f) => parseForest(f, names));
  const s = root.optionalChild('sync') ?? new Reader(opts.file, 'directory.sync', {});
  const maxDeletePercent = s.raw.maxDeletePercent === undefined ? undefined : s.number('maxDeletePercent', 0);
  if (maxDeletePercent !== undefined && maxDeletePercent > 100)
    s.fail('maxDeletePercent', 'must be between 0 and 100');
  const rep = root.optionalChild('replicate') ?? new Reader(opts.file, 'directory.replicate', {});
  return {
    central,
    forests,
    sync: {
      deleteGraceSeconds: s.duration('deleteGracePeriod', '30d'),
      maxDeletes: s.number('maxDeletes', 500),
      maxDeletePercent,
      lockStaleSeconds: s.duration('lockStaleAfter', '2m'),
    },
    replicate: { intervalSeconds: rep.duration('interval', '5m'), prune: rep.boolean('prune', false) },
  };
}
