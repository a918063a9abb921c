import { CliError } from '../cli/errors.js';
import { computeHa1Pair, digestIdentity } from '../registrar/ha1.js';
import type { Store } from '../store/store.js';
import { normalizeAor, type User, UserExistsError } from '../store/users.js';

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
}

/**
 * Turns what an admin typed into the stored AOR: `alice` becomes alice@DOMAIN; an address
 * in another domain is refused, because the realm of a user's digest secrets is the
 * server's domain (see src/registrar/ha1.ts) and such a user could never sign in.
 */
export function resolveAor(input: string, domain: string): string {
  const raw = normalizeAor(input);
  const d = domain.toLowerCase();
  const aor = raw.includes('@') ? raw : `${raw}@${d}`;
  const at = aor.lastIndexOf('@');
  const user = aor.slice(0, at);
  const host = aor.slice(at + 1);
  // RFC 3261 25.1 user part: unreserved / escaped / user-unreserved; no spaces, ':' or a second '@'.
  if (!user || !host || !/^[a-z0-9\-_.!~*'()&=+$,;?/%]+$/.test(user) || !/^[a-z0-9.-]+$/.test(host)) {
    throw new CliError('INVALID_AOR', `${input} is not a valid SIP address`);
  }
  if (host !== d) throw new CliError('WRONG_DOMAIN', `${aor} is not in the domain ${d}`);
  return aor;
}

async function summarize(store: Store, user: User, realm: string): Promise<UserSummary> {
  const creds = await store.users.getCredentials(user.aor, realm);
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
  domain: string;
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
    throw new CliError('HOME_NOT_FOUND', `no home named ${input.home}`);
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
    if (err instanceof UserExistsError) throw new CliError('USER_EXISTS', `user ${aor} already exists`);
    throw err;
  }
}

export function checkPassword(password: string): void {
  if (password.length === 0)
    throw new CliError('INVALID_ARGUMENT', 'the password is empty', 'Give a non-empty password.');
  if (/[\r\n]/.test(password)) {
    throw new CliError(
      'INVALID_ARGUMENT',
      'the password contains a line break',
      'Give the password on one line.',
    );
  }
}

async function mustGet(store: Store, aor: string): Promise<User> {
  const user = await store.users.getUser(aor);
  if (!user) throw new CliError('USER_NOT_FOUND', `no user ${aor}`);
  return user;
}

export async function setPassword(
  store: Store,
  input: { aor: string; password: string; domain: string },
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
  input: { aor: string; domain: string; enabled: boolean },
): Promise<UserSummary & { changed: boolean }> {
  const aor = resolveAor(input.aor, input.domain);
  const before = await mustGet(store, aor);
  if (before.enabled !== input.enabled) await store.users.setEnabled(aor, input.enabled);
  const after = await mustGet(store, aor);
  return { ...(await summarize(store, after, input.domain)), changed: before.enabled !== input.enabled };
}

export async function showUser(store: Store, input: { aor: string; domain: string }): Promise<UserSummary> {
  const aor = resolveAor(input.aor, input.domain);
  return summarize(store, await mustGet(store, aor), input.domain);
}

export async function removeUser(
  store: Store,
  input: { aor: string; domain: string },
): Promise<{ aor: string }> {
  const aor = resolveAor(input.aor, input.domain);
  if (!(await store.users.removeUser(aor))) throw new CliError('USER_NOT_FOUND', `no user ${aor}`);
  return { aor };
}

export interface ListUsersInput {
  domain: string;
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
  const withPassword = await store.users.withCredentials(
    page.users.map((u) => u.aor),
    input.domain.toLowerCase(),
  );
  return {
    users: page.users.map((u) => toSummary(u, withPassword.has(u.aor))),
    total: await store.users.countUsers({ home: input.home, enabled: input.enabled }),
    nextCursor: page.nextCursor,
  };
}
