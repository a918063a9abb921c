import { computeHa1Pair, digestIdentity } from '../registrar/ha1.js';
import type { Store } from '../store/store.js';
import { normalizeAor, type User, UserExistsError } from '../store/users.js';
import { UserAdminError } from './errors.js';

/** What `parley users show/list` print: a user without secrets. */
export interface UserSummary {
  aor: string;
  displayName: string;
  enabled: boolean;
  home: string | null;
  source: string;
  hasPassword: boolean;
  createdAt: string;
  updatedAt: string;
  /** Directory groups the user is in (users show only). */
  groups?: string[];
}

/**
 * The domains an administrator may put users in: the deployment's (config.domains), the
 * one a bare name takes (the first, or --domain), and whether to store a user of another
 * domain anyway (--force).
 */
export interface DomainScope {
  /** Served domains; the first is the default. */
  domains: readonly string[];
  /** Domain of a bare name (`alice`); default the first served domain. */
  defaultDomain?: string;
  /** Accept an address in a domain the deployment does not serve. */
  force?: boolean;
}

/** A single served domain, for callers (and tests) that manage one. */
export function oneDomain(domain: string): DomainScope {
  return { domains: [domain.toLowerCase()] };
}

/**
 * Turns what an admin typed into the stored AOR: `alice` becomes alice@DOMAIN; an address
 * in a domain the deployment does not serve is refused unless forced, because the realm of
 * a user's digest secrets is its domain (see src/registrar/ha1.ts) and no server would
 * ever sign such a user in.
 */
export function resolveAor(input: string, scope: DomainScope | string): string {
  const s = typeof scope === 'string' ? oneDomain(scope) : scope;
  const served = s.domains.map((d) => d.toLowerCase());
  const d = (s.defaultDomain ?? served[0]).toLowerCase();
  const raw = normalizeAor(input);
  const aor = raw.includes('@') ? raw : `${raw}@${d}`;
  const at = aor.lastIndexOf('@');
  const user = aor.slice(0, at);
  const host = aor.slice(at + 1);
  // RFC 3261 25.1 user part: unreserved / escaped / user-unreserved; no spaces, ':' or a second '@'.
  if (!user || !host || !/^[a-z0-9\-_.!~*'()&=+$,;?/%]+$/.test(user) || !/^[a-z0-9.-]+$/.test(host)) {
    throw new UserAdminError('INVALID_AOR', `${input} is not a valid SIP address`);
  }
  if (!served.includes(host) && !s.force) {
    throw new UserAdminError(
      'DOMAIN_NOT_SERVED',
      `${aor}: this deployment does not serve ${host} (it serves ${served.join(', ')})`,
    );
  }
  return aor;
}

/** A user's digest realm is its own domain (src/registrar/ha1.ts digestIdentity). */
async function summarize(store: Store, user: User): Promise<UserSummary> {
  const creds = await store.users.getCredentials(user.aor, digestIdentity(user.aor).realm);
  return toSummary(user, creds !== undefined);
}

function toSummary(user: User, hasPassword: boolean): UserSummary {
  return {
    aor: user.aor,
    displayName: user.displayName,
    enabled: user.enabled,
    home: user.home,
    source: user.source,
    hasPassword,
    createdAt: user.createdAt.toISOString(),
    updatedAt: user.updatedAt.toISOString(),
  };
}

export interface AddUserInput {
  aor: string;
  /** Plain password; only its HA1s are stored. */
  password: string;
  domain: DomainScope | string;
  displayName?: string;
  /** Home to place the user in; must exist. */
  home?: string;
  /**
   * Home used when `home` is not given and it exists in the store: the configured home of
   * the server the admin manages (a standard server registers its home when it starts).
   */
  defaultHome?: string;
  enabled?: boolean;
}

/** Creates a local user with its digest secrets, in one transaction. */
export async function addUser(store: Store, input: AddUserInput): Promise<UserSummary> {
  const aor = resolveAor(input.aor, input.domain);
  checkPassword(input.password);
  const { username, realm } = digestIdentity(aor);
  if (input.home && !(await store.homes.getHome(input.home))) {
    throw new UserAdminError('HOME_NOT_FOUND', `no home named ${input.home}`);
  }
  let home = input.home;
  if (!home && input.defaultHome && (await store.homes.getHome(input.defaultHome))) home = input.defaultHome;
  try {
    const user = await store.transaction(async (tx) => {
      const created = await tx.users.createUser({
        aor,
        displayName: input.displayName ?? '',
        enabled: input.enabled ?? true,
        home: home ?? null,
        source: 'local',
      });
      await tx.users.setCredentials(created.id, realm, computeHa1Pair(username, realm, input.password));
      return created;
    });
    return toSummary(user, true);
  } catch (err) {
    if (err instanceof UserExistsError) throw new UserAdminError('USER_EXISTS', `user ${aor} already exists`);
    throw err;
  }
}

export function checkPassword(password: string): void {
  if (password.length === 0) throw new UserAdminError('INVALID_PASSWORD', 'the password is empty');
  if (/[\r\n]/.test(password)) {
    throw new UserAdminError('INVALID_PASSWORD', 'the password contains a line break');
  }
}

async function mustGet(store: Store, aor: string): Promise<User> {
  const user = await store.users.getUser(aor);
  if (!user) throw new UserAdminError('USER_NOT_FOUND', `no user ${aor}`);
  return user;
}

export async function setPassword(
  store: Store,
  input: { aor: string; password: string; domain: DomainScope | string },
): Promise<UserSummary> {
  const aor = resolveAor(input.aor, input.domain);
  checkPassword(input.password);
  const { username, realm } = digestIdentity(aor);
  const user = await mustGet(store, aor);
  await store.users.setCredentials(user.id, realm, computeHa1Pair(username, realm, input.password));
  return toSummary(user, true);
}

export async function setUserEnabled(
  store: Store,
  input: { aor: string; domain: DomainScope | string; enabled: boolean },
): Promise<UserSummary & { changed: boolean }> {
  const aor = resolveAor(input.aor, input.domain);
  const before = await mustGet(store, aor);
  if (before.enabled !== input.enabled) await store.users.setEnabled(aor, input.enabled);
  const after = await mustGet(store, aor);
  return { ...(await summarize(store, after)), changed: before.enabled !== input.enabled };
}

/** Shows a stored user whatever its domain: looking is never refused. */
export async function showUser(
  store: Store,
  input: { aor: string; domain: DomainScope | string },
): Promise<UserSummary> {
  const aor = resolveAor(input.aor, { ...asScope(input.domain), force: true });
  return { ...(await summarize(store, await mustGet(store, aor))), groups: await store.groups.groupsOf(aor) };
}

function asScope(domain: DomainScope | string): DomainScope {
  return typeof domain === 'string' ? oneDomain(domain) : domain;
}

export async function removeUser(
  store: Store,
  input: { aor: string; domain: DomainScope | string },
): Promise<{ aor: string }> {
  // Removing a user of a domain no longer served is the cleanup that should always work.
  const aor = resolveAor(input.aor, { ...asScope(input.domain), force: true });
  if (!(await store.users.removeUser(aor))) throw new UserAdminError('USER_NOT_FOUND', `no user ${aor}`);
  return { aor };
}

export interface ListUsersInput {
  home?: string;
  enabled?: boolean;
  limit?: number;
  after?: string;
}

export interface UserList {
  users: UserSummary[];
  total: number;
  nextCursor?: string;
}

export async function listUsers(store: Store, input: ListUsersInput): Promise<UserList> {
  const page = await store.users.listUsers({
    home: input.home,
    enabled: input.enabled,
    limit: input.limit ?? 100,
    after: input.after,
  });
  // Each user's secrets are in its own domain's realm: ask once per domain on the page.
  const byRealm = new Map<string, string[]>();
  for (const u of page.users) {
    const realm = digestIdentity(u.aor).realm;
    byRealm.set(realm, [...(byRealm.get(realm) ?? []), u.aor]);
  }
  const withPassword = new Set<string>();
  for (const [realm, aors] of byRealm) {
    for (const aor of await store.users.withCredentials(aors, realm)) withPassword.add(aor);
  }
  return {
    users: page.users.map((u) => toSummary(u, withPassword.has(u.aor))),
    total: await store.users.countUsers({ home: input.home, enabled: input.enabled }),
    nextCursor: page.nextCursor,
  };
}
