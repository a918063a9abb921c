import type { Sql } from './sql.js';

export interface User {
  id: number;
  /** Address of record without scheme, lower-case: alice@example.com. */
  aor: string;
  displayName: string;
  enabled: boolean;
  /** Name of the home (standard server or pool) hosting the user; null until placed. */
  home: string | null;
  /** 'local', or 'ldap:<forest>' for users replicated from a directory. */
  source: string;
  /** Stable id in the source (LDAP entryUUID / objectGUID), so renames are followed. */
  sourceAnchor: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A user to add: its address, and any of what a directory would say (DirectoryUser). */
export type NewUser = Pick<User, 'aor'> & Partial<DirectoryUser>;

export interface UserFilter {
  home?: string;
  enabled?: boolean;
  /** Default 100. */
  limit?: number;
  offset?: number;
  /** Keyset paging: the aor of the last user of the previous page (cheaper than offset). */
  after?: string;
}

export interface UserPage {
  users: User[];
  /** Pass as `after` for the next page; undefined on the last page. */
  nextCursor?: string;
}

/** Digest secrets of one user in one realm, with what authentication also needs to know. */
export interface StoredCredentials {
  userId: number;
  aor: string;
  enabled: boolean;
  ha1Md5: string;
  ha1Sha256: string;
}

/**
 * What a directory says about a user: the fields `parley directory replicate` owns (`source`
 * is 'ldap:<forest>', 'ldap:central' for users of the central forest).
 */
export type DirectoryUser = Pick<
  User,
  'aor' | 'displayName' | 'enabled' | 'home' | 'source' | 'sourceAnchor'
>;

/** Digest secrets of one realm, as a wave migration copies them between stores. */
export interface RealmCredentials {
  realm: string;
  ha1Md5: string;
  ha1Sha256: string;
}

/** A user's account as a wave migration copies it: the row (without placement) and every realm's secrets. */
export interface UserAccount {
  aor: string;
  displayName: string;
  enabled: boolean;
  source: string;
  sourceAnchor: string | null;
  /** Sorted by realm. */
  credentials: RealmCredentials[];
}

/** Statements of a directory write carry at most this many users (one unnest each). */
const DIRECTORY_BATCH = 500;

/**
 * Change feed channel: payload is the aor of a user whose account or credentials changed
 * ('' means any user may have changed: a listener reloads what it caches). Running servers
 * sign out a live user that was disabled or deleted (src/registrar/account-changes.ts).
 */
export const USERS_CHANNEL = 'parley_users';

export class UserExistsError extends Error {
  constructor(readonly aor: string) {
    super(`user ${aor} already exists`);
  }
}

interface UserRow {
  id: number;
  aor: string;
  display_name: string;
  enabled: boolean;
  home: string | null;
  source: string;
  source_anchor: string | null;
  created_at: Date;
  updated_at: Date;
}

const USER_COLUMNS = 'id, aor, display_name, enabled, home, source, source_anchor, created_at, updated_at';

function toUser(r: UserRow): User {
  return {
    id: Number(r.id),
    aor: r.aor,
    displayName: r.display_name,
    enabled: r.enabled,
    home: r.home,
    source: r.source,
    sourceAnchor: r.source_anchor,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** AORs are stored lower-case (RFC 3261 19.1.4 compares host parts case-insensitively; Parley also folds user parts, as directories do). */
export function normalizeAor(aor: string): string {
  return aor
    .trim()
    .replace(/^sips?:/i, '')
    .toLowerCase();
}

export class UserRepository {
  constructor(private readonly sql: Sql) {}

  private async changed(aor: string): Promise<void> {
    await this.sql.query('SELECT pg_notify($1, $2)', [USERS_CHANNEL, aor]);
  }

  async createUser(user: NewUser): Promise<User> {
    const aor = normalizeAor(user.aor);
    const res = await this.sql.query<UserRow>(
      `INSERT INTO users (aor, display_name, enabled, home, source, source_anchor)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (aor) DO NOTHING
       RETURNING ${USER_COLUMNS}`,
      [
        aor,
        user.displayName ?? '',
        user.enabled ?? true,
        user.home ?? null,
        user.source ?? 'local',
        user.sourceAnchor ?? null,
      ],
    );
    if (res.rows.length === 0) throw new UserExistsError(aor);
    await this.changed(aor);
    return toUser(res.rows[0]);
  }

  async getUser(aor: string): Promise<User | undefined> {
    const res = await this.sql.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE aor = $1`, [
      normalizeAor(aor),
    ]);
    return res.rows[0] ? toUser(res.rows[0]) : undefined;
  }

  async getUserById(id: number): Promise<User | undefined> {
    const res = await this.sql.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE id = $1`, [id]);
    return res.rows[0] ? toUser(res.rows[0]) : undefined;
  }

  async getUserBySourceAnchor(source: string, anchor: string): Promise<User | undefined> {
    const res = await this.sql.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM users WHERE source = $1 AND source_anchor = $2`,
      [source, anchor],
    );
    return res.rows[0] ? toUser(res.rows[0]) : undefined;
  }

  /** One page in aor order; use `after` (keyset) to walk large sets without OFFSET's cost. */
  async listUsers(filter: UserFilter = {}): Promise<UserPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.home !== undefined) {
      params.push(filter.home);
      where.push(`home = $${params.length}`);
    }
    if (filter.enabled !== undefined) {
      params.push(filter.enabled);
      where.push(`enabled = $${params.length}`);
    }
    if (filter.after !== undefined) {
      params.push(normalizeAor(filter.after));
      where.push(`aor > $${params.length}`);
    }
    const limit = filter.limit ?? 100;
    params.push(limit + 1);
    let text = `SELECT ${USER_COLUMNS} FROM users ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY aor LIMIT $${params.length}`;
    if (filter.offset) {
      params.push(filter.offset);
      text += ` OFFSET $${params.length}`;
    }
    const res = await this.sql.query<UserRow>(text, params);
    const users = res.rows.slice(0, limit).map(toUser);
    const more = res.rows.length > limit;
    return { users, nextCursor: more ? users[users.length - 1]?.aor : undefined };
  }

  /** Streams every matching user page by page, so exports and syncs never hold the whole table. */
  async *iterateUsers(filter: Omit<UserFilter, 'after' | 'offset'> = {}): AsyncGenerator<User> {
    let after: string | undefined;
    for (;;) {
      const page = await this.listUsers({ ...filter, after, limit: filter.limit ?? 500 });
      yield* page.users;
      if (!page.nextCursor) return;
      after = page.nextCursor;
    }
  }

  async countUsers(filter: Pick<UserFilter, 'home' | 'enabled'> = {}): Promise<number> {
    const res = await this.sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM users
       WHERE ($1::text IS NULL OR home = $1) AND ($2::boolean IS NULL OR enabled = $2)`,
      [filter.home ?? null, filter.enabled ?? null],
    );
    return res.rows[0].n;
  }

  private async update(aor: string, set: string, value: unknown): Promise<boolean> {
    const key = normalizeAor(aor);
    const res = await this.sql.query(`UPDATE users SET ${set} = $2, updated_at = now() WHERE aor = $1`, [
      key,
      value,
    ]);
    if (res.affectedRows > 0) await this.changed(key);
    return res.affectedRows > 0;
  }

  /** Returns false when no such user. */
  setEnabled(aor: string, enabled: boolean): Promise<boolean> {
    return this.update(aor, 'enabled', enabled);
  }

  setDisplayName(aor: string, displayName: string): Promise<boolean> {
    return this.update(aor, 'display_name', displayName);
  }

  setHome(aor: string, home: string | null): Promise<boolean> {
    return this.update(aor, 'home', home);
  }

  /** Deletes the user (credentials, contacts and rules cascade) and its registrations. */
  async removeUser(aor: string): Promise<boolean> {
    const key = normalizeAor(aor);
    return this.sql.transaction(async (tx) => {
      const res = await tx.query('DELETE FROM users WHERE aor = $1', [key]);
      if (res.affectedRows === 0) return false;
      await tx.query('DELETE FROM registrations WHERE aor = $1', [key]);
      await tx.query('SELECT pg_notify($1, $2)', [USERS_CHANNEL, key]);
      return true;
    });
  }

  /** Every user's directory-owned fields, in one statement: what replication diffs against. */
  async listDirectoryStates(): Promise<DirectoryUser[]> {
    const res = await this.sql.query<UserRow>(
      'SELECT aor, display_name, enabled, home, source, source_anchor FROM users',
    );
    return res.rows.map((r) => ({
      aor: r.aor,
      displayName: r.display_name,
      enabled: r.enabled,
      home: r.home,
      source: r.source,
      sourceAnchor: r.source_anchor,
    }));
  }

  /**
   * Creates or updates users from a directory, batch by batch (one statement per
   * DIRECTORY_BATCH users). Local users (source 'local') are left alone. Every user written
   * is announced on USERS_CHANNEL by the same statement. Returns the AORs written.
   */
  async upsertDirectoryUsers(users: DirectoryUser[]): Promise<string[]> {
    const written: string[] = [];
    for (let i = 0; i < users.length; i += DIRECTORY_BATCH) {
      const b = users.slice(i, i + DIRECTORY_BATCH);
      const res = await this.sql.query<{ aor: string }>(
        `WITH up AS (
           INSERT INTO users (aor, display_name, enabled, home, source, source_anchor)
           SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::text[], $5::text[], $6::text[])
           ON CONFLICT (aor) DO UPDATE SET display_name = EXCLUDED.display_name, enabled = EXCLUDED.enabled,
             home = EXCLUDED.home, source = EXCLUDED.source, source_anchor = EXCLUDED.source_anchor, updated_at = now()
           WHERE users.source <> 'local'
           RETURNING aor)
         SELECT aor, pg_notify($7, aor)::text AS notified FROM up`,
        [
          b.map((u) => normalizeAor(u.aor)),
          b.map((u) => u.displayName),
          b.map((u) => u.enabled),
          b.map((u) => u.home),
          b.map((u) => u.source),
          b.map((u) => u.sourceAnchor),
          USERS_CHANNEL,
        ],
      );
      for (const r of res.rows) written.push(r.aor);
    }
    return written;
  }

  /** Disables directory users (never local ones) that are enabled; announces each. Returns their AORs. */
  async disableDirectoryUsers(aors: string[]): Promise<string[]> {
    if (aors.length === 0) return [];
    const res = await this.sql.query<{ aor: string }>(
      `WITH d AS (
         UPDATE users SET enabled = false, updated_at = now()
         WHERE aor = ANY($1::text[]) AND source LIKE 'ldap:%' AND enabled
         RETURNING aor)
       SELECT aor, pg_notify($2, aor)::text AS notified FROM d`,
      [aors.map(normalizeAor), USERS_CHANNEL],
    );
    return res.rows.map((r) => r.aor);
  }

  /**
   * Deletes directory users (never local ones) with their registrations, as removeUser does
   * for one; announces each. Returns the AORs deleted.
   */
  async removeDirectoryUsers(aors: string[]): Promise<string[]> {
    if (aors.length === 0) return [];
    const res = await this.sql.query<{ aor: string }>(
      `WITH d AS (
         DELETE FROM users WHERE aor = ANY($1::text[]) AND source LIKE 'ldap:%' RETURNING aor),
       r AS (DELETE FROM registrations WHERE aor IN (SELECT aor FROM d))
       SELECT aor, pg_notify($2, aor)::text AS notified FROM d`,
      [aors.map(normalizeAor), USERS_CHANNEL],
    );
    return res.rows.map((r) => r.aor);
  }

  async setCredentials(
    userId: number,
    realm: string,
    ha1: { ha1Md5: string; ha1Sha256: string },
  ): Promise<void> {
    const res = await this.sql.query<{ aor: string }>(
      `WITH up AS (
         INSERT INTO credentials (user_id, realm, ha1_md5, ha1_sha256)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, realm) DO UPDATE
           SET ha1_md5 = EXCLUDED.ha1_md5, ha1_sha256 = EXCLUDED.ha1_sha256, updated_at = now()
         RETURNING user_id)
       SELECT u.aor FROM users u JOIN up ON up.user_id = u.id`,
      [userId, realm, ha1.ha1Md5, ha1.ha1Sha256],
    );
    if (res.rows[0]) await this.changed(res.rows[0].aor);
  }

  async removeCredentials(userId: number, realm?: string): Promise<number> {
    const res = await this.sql.query(
      'DELETE FROM credentials WHERE user_id = $1 AND ($2::text IS NULL OR realm = $2)',
      [userId, realm ?? null],
    );
    return res.affectedRows;
  }

  /**
   * The authentication hot path: one indexed lookup (users.aor unique, credentials primary
   * key). Disabled users are returned with enabled=false so the caller can answer 403
   * rather than 401.
   */
  async getCredentials(aor: string, realm: string): Promise<StoredCredentials | undefined> {
    const res = await this.sql.query<CredentialsRow>(
      `SELECT ${CREDENTIALS_COLUMNS}
       FROM users u JOIN credentials c ON c.user_id = u.id AND c.realm = $2
       WHERE u.aor = $1`,
      [normalizeAor(aor), realm],
    );
    const r = res.rows[0];
    return r ? toStoredCredentials(r) : undefined;
  }

  /** Which of these AORs have digest secrets in the realm (one query for a page of users). */
  async withCredentials(aors: string[], realm: string): Promise<Set<string>> {
    if (aors.length === 0) return new Set();
    const res = await this.sql.query<{ aor: string }>(
      `SELECT u.aor FROM users u JOIN credentials c ON c.user_id = u.id AND c.realm = $2 WHERE u.aor = ANY($1::text[])`,
      [aors.map(normalizeAor), realm],
    );
    return new Set(res.rows.map((r) => r.aor));
  }

  /** Every credential of a realm, for a server's cache preload at start. */
  async listCredentials(realm: string): Promise<StoredCredentials[]> {
    const res = await this.sql.query<CredentialsRow>(
      `SELECT ${CREDENTIALS_COLUMNS}
       FROM users u JOIN credentials c ON c.user_id = u.id WHERE c.realm = $1 ORDER BY u.aor`,
      [realm],
    );
    return res.rows.map(toStoredCredentials);
  }

  /** Accounts of these users (missing ones are absent), credentials of every realm included. */
  async readAccounts(aors: string[]): Promise<UserAccount[]> {
    if (aors.length === 0) return [];
    const res = await this.sql.query<{ j: string }>(
      `SELECT coalesce(json_agg(json_build_array(u.aor, u.display_name, u.enabled, u.source, u.source_anchor,
                 (SELECT coalesce(json_agg(json_build_array(c.realm, c.ha1_md5, c.ha1_sha256) ORDER BY c.realm COLLATE "C"), '[]')
                    FROM credentials c WHERE c.user_id = u.id)) ORDER BY u.aor COLLATE "C"), '[]')::text AS j
         FROM users u WHERE u.aor = ANY($1::text[])`,
      [aors.map(normalizeAor)],
    );
    const rows = JSON.parse(res.rows[0].j) as [
      string,
      string,
      boolean,
      string,
      string | null,
      [string, string, string][],
    ][];
    return rows.map(([aor, displayName, enabled, source, sourceAnchor, creds]) => ({
      aor,
      displayName,
      enabled,
      source,
      sourceAnchor,
      credentials: creds.map(([realm, ha1Md5, ha1Sha256]) => ({ realm, ha1Md5, ha1Sha256 })),
    }));
  }

  /**
   * Creates or updates users from accounts read in another store (wave migrations), with
   * exactly the given credentials: a batch of set-based statements, each user announced on
   * USERS_CHANNEL. An existing user keeps its placement; a new one gets `home`. Returns the
   * users' ids by aor.
   */
  async writeAccounts(accounts: UserAccount[], home: string | null): Promise<Map<string, number>> {
    const ids = new Map<string, number>();
    if (accounts.length === 0) return ids;
    return this.sql.transaction(async (tx) => {
      const up = await tx.query<{ id: number | string; aor: string }>(
        `INSERT INTO users (aor, display_name, enabled, source, source_anchor, home)
         SELECT a, d, e, s, sa, $6::text FROM unnest($1::text[], $2::text[], $3::boolean[], $4::text[], $5::text[]) AS t(a, d, e, s, sa)
         ON CONFLICT (aor) DO UPDATE SET display_name = EXCLUDED.display_name, enabled = EXCLUDED.enabled,
           source = EXCLUDED.source, source_anchor = EXCLUDED.source_anchor, updated_at = now()
         RETURNING id, aor`,
        [
          accounts.map((a) => normalizeAor(a.aor)),
          accounts.map((a) => a.displayName),
          accounts.map((a) => a.enabled),
          accounts.map((a) => a.source),
          accounts.map((a) => a.sourceAnchor),
          home,
        ],
      );
      for (const r of up.rows) ids.set(r.aor, Number(r.id));
      const userIds = [...ids.values()].map(String);
      await tx.query('DELETE FROM credentials WHERE user_id = ANY($1::bigint[])', [userIds]);
      const c = { ids: [] as string[], realms: [] as string[], md5: [] as string[], sha: [] as string[] };
      for (const a of accounts) {
        const id = ids.get(normalizeAor(a.aor));
        for (const cred of a.credentials) {
          c.ids.push(String(id));
          c.realms.push(cred.realm);
          c.md5.push(cred.ha1Md5);
          c.sha.push(cred.ha1Sha256);
        }
      }
      if (c.ids.length > 0) {
        await tx.query(
          `INSERT INTO credentials (user_id, realm, ha1_md5, ha1_sha256)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])`,
          [c.ids, c.realms, c.md5, c.sha],
        );
      }
      await tx.query('SELECT pg_notify($1, aor) FROM unnest($2::text[]) AS aor', [
        USERS_CHANNEL,
        [...ids.keys()],
      ]);
      return ids;
    });
  }
}

/** What getCredentials and listCredentials select from users (u) joined with credentials (c). */
const CREDENTIALS_COLUMNS = 'u.id AS user_id, u.aor, u.enabled, c.ha1_md5, c.ha1_sha256';

interface CredentialsRow {
  user_id: number;
  aor: string;
  enabled: boolean;
  ha1_md5: string;
  ha1_sha256: string;
}

function toStoredCredentials(r: CredentialsRow): StoredCredentials {
  return {
    userId: Number(r.user_id),
    aor: r.aor,
    enabled: r.enabled,
    ha1Md5: r.ha1_md5,
    ha1Sha256: r.ha1_sha256,
  };
}
