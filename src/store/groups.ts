import type { Sql } from './sql.js';

/**
 * Notified (payload '') when a replication changes group memberships: servers that scope a
 * feature to groups (archiving.groups) reload their members.
 */
export const GROUPS_CHANNEL = 'parley_groups';

/** One user in one group, as the directory says. */
export interface GroupMembership {
  group: string;
  aor: string;
}

/**
 * Group membership of users (user_groups, migration 010), replicated from the central forest
 * (src/directory/groups.ts). Group names are compared without case, as LDAP compares cn.
 */
export class GroupRepository {
  constructor(private readonly sql: Sql) {}

  /**
   * Makes the memberships of `source` exactly these, in one statement: memberships of users
   * not in the store are skipped, others of the source removed. Announces a change on
   * GROUPS_CHANNEL. Returns how many were added and removed.
   */
  async replaceMemberships(
    source: string,
    memberships: readonly GroupMembership[],
  ): Promise<{ added: number; removed: number }> {
    const { rows } = await this.sql.query<{ added: number; removed: number }>(
      `WITH wanted AS (
         SELECT DISTINCT lower(w.g) AS group_name, u.id AS user_id
         FROM unnest($1::text[], $2::text[]) AS w(g, aor) JOIN users u ON u.aor = lower(w.aor)),
       gone AS (
         DELETE FROM user_groups ug WHERE ug.source = $3
           AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.group_name = ug.group_name AND w.user_id = ug.user_id)
         RETURNING 1),
       added AS (
         INSERT INTO user_groups (group_name, user_id, source) SELECT group_name, user_id, $3 FROM wanted
         ON CONFLICT DO NOTHING RETURNING 1),
       counts AS (SELECT (SELECT count(*) FROM added)::int AS added, (SELECT count(*) FROM gone)::int AS removed)
       SELECT added, removed, CASE WHEN added + removed > 0 THEN pg_notify($4, '')::text END AS notified FROM counts`,
      [memberships.map((m) => m.group), memberships.map((m) => m.aor), source, GROUPS_CHANNEL],
    );
    return { added: rows[0]?.added ?? 0, removed: rows[0]?.removed ?? 0 };
  }

  /** The AORs of the members of any of these groups (enabled or not). */
  async membersOf(groups: readonly string[]): Promise<string[]> {
    if (groups.length === 0) return [];
    const { rows } = await this.sql.query<{ aor: string }>(
      `SELECT DISTINCT u.aor FROM user_groups ug JOIN users u ON u.id = ug.user_id
       WHERE ug.group_name = ANY($1::text[]) ORDER BY u.aor`,
      [groups.map((g) => g.toLowerCase())],
    );
    return rows.map((r) => r.aor);
  }

  /** The groups a user is in. */
  async groupsOf(aor: string): Promise<string[]> {
    const { rows } = await this.sql.query<{ group_name: string }>(
      `SELECT ug.group_name FROM user_groups ug JOIN users u ON u.id = ug.user_id
       WHERE u.aor = lower($1) ORDER BY ug.group_name`,
      [aor],
    );
    return rows.map((r) => r.group_name);
  }
}
