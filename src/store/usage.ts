import type { Sql } from './sql.js';

/** What one server adds to a day's rollup (src/reports/usage-recorder.ts). */
export interface UsageIncrement {
  /** UTC day, YYYY-MM-DD. */
  day: string;
  home: string;
  serverId: string;
  messages: number;
  bytes: number;
  /** Users signed in at once on this server: the day's peak becomes the larger. */
  signedIn: number;
  /** Users active since the last increment (already-recorded ones are ignored). */
  activeUsers: readonly string[];
}

export interface UsageDay {
  day: string;
  home: string;
  activeUsers: number;
  /** Sum of the servers' own peaks: exact for a standard server, an upper bound for a pool. */
  peakSignedIn: number;
  messages: number;
  bytes: number;
}

/** The usage rollup tables: one upsert per server per minute, a grouped read per report. */
export class UsageRepository {
  constructor(private readonly sql: Sql) {}

  async add(inc: UsageIncrement): Promise<void> {
    await this.sql.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO usage_daily (day, home, server_id, messages, bytes, peak_signed_in)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (day, home, server_id) DO UPDATE SET
           messages = usage_daily.messages + EXCLUDED.messages,
           bytes = usage_daily.bytes + EXCLUDED.bytes,
           peak_signed_in = GREATEST(usage_daily.peak_signed_in, EXCLUDED.peak_signed_in)`,
        [inc.day, inc.home, inc.serverId, inc.messages, inc.bytes, inc.signedIn],
      );
      if (inc.activeUsers.length > 0) {
        await tx.query(
          `INSERT INTO usage_active_users (day, home, aor) SELECT $1, $2, a FROM unnest($3::text[]) AS a
           ON CONFLICT DO NOTHING`,
          [inc.day, inc.home, inc.activeUsers],
        );
      }
    });
  }

  /** Days from `since` up to (not including) `until`, by home, oldest first. */
  async days(since: string, until: string): Promise<UsageDay[]> {
    const { rows } = await this.sql.query<{
      day: string | Date;
      home: string;
      active: number;
      peak: number;
      messages: number;
      bytes: number;
    }>(
      `WITH d AS (
         SELECT day, home, sum(messages)::int8 AS messages, sum(bytes)::int8 AS bytes, sum(peak_signed_in)::int8 AS peak
         FROM usage_daily WHERE day >= $1 AND day < $2 GROUP BY day, home),
       a AS (
         SELECT day, home, count(*)::int8 AS active FROM usage_active_users
         WHERE day >= $1 AND day < $2 GROUP BY day, home)
       SELECT to_char(COALESCE(d.day, a.day), 'YYYY-MM-DD') AS day, COALESCE(d.home, a.home) AS home,
              COALESCE(a.active, 0) AS active, COALESCE(d.peak, 0) AS peak,
              COALESCE(d.messages, 0) AS messages, COALESCE(d.bytes, 0) AS bytes
       FROM d FULL JOIN a ON a.day = d.day AND a.home = d.home
       ORDER BY 1, 2`,
      [since, until],
    );
    return rows.map((r) => ({
      day: String(r.day),
      home: r.home,
      activeUsers: Number(r.active),
      peakSignedIn: Number(r.peak),
      messages: Number(r.messages),
      bytes: Number(r.bytes),
    }));
  }

  /** Enabled users now, by the home they live in; users placed nowhere count for `unplaced` (the standard server's home). */
  async enabledUsersByHome(unplaced: string): Promise<Array<{ home: string; enabledUsers: number }>> {
    const { rows } = await this.sql.query<{ home: string; n: number }>(
      'SELECT COALESCE(home, $1) AS home, count(*)::int8 AS n FROM users WHERE enabled GROUP BY 1 ORDER BY 1',
      [unplaced],
    );
    return rows.map((r) => ({ home: r.home, enabledUsers: Number(r.n) }));
  }
}
