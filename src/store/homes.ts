import type { Sql } from './sql.js';
import { normalizeAor, USERS_CHANNEL } from './users.js';

/**
 * Placement feed: the payload is the aor of a user a wave migration (or its rollback) moved
 * to another home. Servers of the home the user left sign it out and send it to its new
 * home (src/migration/departures.ts); other placement changes do not ask for that.
 */
export const PLACEMENT_CHANNEL = 'parley_placement';

/** A user placed in another home than the asking server's, with where that home is. */
export interface Departure {
  aor: string;
  home: string;
  address: string;
}

export type HomeKind = 'standard' | 'pool';

/** Where users live: a standard server or a pool. Directors redirect to `address`. */
export interface Home {
  name: string;
  kind: HomeKind;
  /** SIP URI a director redirects to, e.g. sip:pool1.example.com;transport=tcp */
  address: string;
  createdAt: Date;
}

interface HomeRow {
  name: string;
  kind: HomeKind;
  address: string;
  created_at: Date;
}

function toHome(r: HomeRow): Home {
  return { name: r.name, kind: r.kind, address: r.address, createdAt: r.created_at };
}

export class HomeRepository {
  constructor(private readonly sql: Sql) {}

  async upsertHome(home: { name: string; kind: HomeKind; address: string }): Promise<Home> {
    const res = await this.sql.query<HomeRow>(
      `INSERT INTO homes (name, kind, address) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, address = EXCLUDED.address
       RETURNING name, kind, address, created_at`,
      [home.name, home.kind, home.address],
    );
    return toHome(res.rows[0]);
  }

  async getHome(name: string): Promise<Home | undefined> {
    const res = await this.sql.query<HomeRow>(
      'SELECT name, kind, address, created_at FROM homes WHERE name = $1',
      [name],
    );
    return res.rows[0] ? toHome(res.rows[0]) : undefined;
  }

  async listHomes(): Promise<Home[]> {
    const res = await this.sql.query<HomeRow>(
      'SELECT name, kind, address, created_at FROM homes ORDER BY name',
    );
    return res.rows.map(toHome);
  }

  /** Fails (foreign key) while users still live there: move them first. */
  async removeHome(name: string): Promise<boolean> {
    const res = await this.sql.query('DELETE FROM homes WHERE name = $1', [name]);
    return res.affectedRows > 0;
  }

  /** The home a user lives in, with its address: what a director needs for a redirect. */
  async getPlacement(aor: string): Promise<Home | undefined> {
    const res = await this.sql.query<HomeRow>(
      `SELECT h.name, h.kind, h.address, h.created_at FROM users u JOIN homes h ON h.name = u.home WHERE u.aor = $1`,
      [normalizeAor(aor)],
    );
    return res.rows[0] ? toHome(res.rows[0]) : undefined;
  }

  /** Moves a user; false when no such user. Notifies the users channel so caches drop the old home. */
  async setPlacement(aor: string, home: string): Promise<boolean> {
    const key = normalizeAor(aor);
    const res = await this.sql.query('UPDATE users SET home = $2, updated_at = now() WHERE aor = $1', [
      key,
      home,
    ]);
    if (res.affectedRows === 0) return false;
    await this.sql.query('SELECT pg_notify($1, $2)', [USERS_CHANNEL, key]);
    return true;
  }

  async countUsersByHome(): Promise<{ home: string | null; users: number }[]> {
    const res = await this.sql.query<{ home: string | null; users: number }>(
      'SELECT home, count(*)::int AS users FROM users GROUP BY home ORDER BY home NULLS FIRST',
    );
    return res.rows;
  }

  /**
   * Moves users to a home in one statement (wave migrations), announcing each user whose
   * placement changed on PLACEMENT_CHANNEL and USERS_CHANNEL. Returns those users.
   */
  async movePlacement(aors: string[], home: string): Promise<string[]> {
    if (aors.length === 0) return [];
    const res = await this.sql.query<{ aor: string }>(
      `WITH m AS (
         UPDATE users SET home = $2, updated_at = now()
          WHERE aor = ANY($1::text[]) AND home IS DISTINCT FROM $2
         RETURNING aor)
       SELECT aor, pg_notify($3, aor)::text AS p, pg_notify($4, aor)::text AS u FROM m`,
      [aors.map(normalizeAor), home, PLACEMENT_CHANNEL, USERS_CHANNEL],
    );
    return res.rows.map((r) => r.aor);
  }

  /** Placement (home name, or null) of each of these users that exists. */
  async getPlacements(aors: string[]): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    if (aors.length === 0) return out;
    const res = await this.sql.query<{ aor: string; home: string | null }>(
      'SELECT aor, home FROM users WHERE aor = ANY($1::text[])',
      [aors.map(normalizeAor)],
    );
    for (const r of res.rows) out.set(r.aor, r.home);
    return out;
  }

  /**
   * Where a user of this store lives, for routing between homes: undefined when the store
   * does not know the user, `home: null` when it records no home (the asking server's own
   * user, as a legacy store keeps them), else the home and its address. `arrivingFrom`: a
   * wave of this store's journal has placed the user here but not yet signed it out of the
   * home it leaves, where its endpoints still are.
   */
  async findResidence(
    aor: string,
  ): Promise<
    { home: string | null; address?: string; arrivingFrom?: { home: string; address: string } } | undefined
  > {
    const res = await this.sql.query<{
      home: string | null;
      address: string | null;
      from_home: string | null;
      from_address: string | null;
    }>(
      `SELECT u.home, h.address, w.source_home AS from_home, fh.address AS from_address
         FROM users u LEFT JOIN homes h ON h.name = u.home
         LEFT JOIN migration_users m ON m.aor = u.aor AND m.state = 'placed'
         LEFT JOIN migration_waves w ON w.name = m.wave AND w.target_home = u.home AND w.state = 'running'
         LEFT JOIN homes fh ON fh.name = w.source_home
        WHERE u.aor = $1
        LIMIT 1`,
      [normalizeAor(aor)],
    );
    const row = res.rows[0];
    if (!row) return undefined;
    if (row.home === null) return { home: null };
    const found: { home: string; address?: string; arrivingFrom?: { home: string; address: string } } = {
      home: row.home,
      address: row.address ?? undefined,
    };
    if (row.from_home !== null && row.from_address !== null)
      found.arrivingFrom = { home: row.from_home, address: row.from_address };
    return found;
  }

  /** Users placed in a home other than this one: those a server of this home sends elsewhere. */
  async listPlacedElsewhere(home: string): Promise<Departure[]> {
    const res = await this.sql.query<Departure>(
      `SELECT u.aor, h.name AS home, h.address FROM users u JOIN homes h ON h.name = u.home
        WHERE u.home <> $1 ORDER BY u.aor`,
      [home],
    );
    return res.rows;
  }
}
