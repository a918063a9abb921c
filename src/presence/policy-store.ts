import type { Sql } from '../store/sql.js';
import type { AccessRule } from './authorize.js';
import type { PresencePolicy } from './server.js';

/** Presence authorization read from the store: the presentity's allow/block list (access_rules). */
export class StorePresencePolicy implements PresencePolicy {
  constructor(
    private readonly sql: Sql,
    private readonly knownUser: (aor: string) => boolean | undefined,
  ) {}

  userExists(aor: string): boolean | Promise<boolean> {
    const known = this.knownUser(aor);
    if (known !== undefined) return known;
    return this.sql
      .query<{ n: number }>('SELECT 1 AS n FROM users WHERE aor = $1 AND enabled', [aor])
      .then((r) => r.rows.length > 0);
  }

  async accessRules(aor: string): Promise<AccessRule[]> {
    const { rows } = await this.sql.query<{ pattern: string; action: 'allow' | 'block' }>(
      'SELECT r.pattern, r.action FROM access_rules r JOIN users u ON u.id = r.user_id WHERE u.aor = $1',
      [aor],
    );
    return rows;
  }
}
