import type { Sql } from './sql.js';

/**
 * Planner statistics for stores without autovacuum. PostgreSQL's autovacuum analyses a
 * table again once enough of it has changed; PGlite runs no autovacuum and its cumulative
 * statistics (pg_stat_user_tables.n_mod_since_analyze) stay at zero, so without this an
 * embedded store's tables keep the statistics of their last ANALYZE (none, for a store
 * filled by an import or a directory sync) and the planner guesses selectivities.
 *
 * What has changed is read from the catalogue instead: ANALYZE records a table's size in
 * pages (pg_class.relpages); a table whose size has moved by more than a tenth since then,
 * or that holds rows and was never analysed, is stale. Inserts grow a table, and so do
 * updates (new row versions); the check is one catalogue query.
 */

/** Moved by more than this share of its size at the last ANALYZE (autovacuum's default scale factor). */
const STALE_SHARE = 0.1;

/** Tables (schema-qualified, quoted) whose statistics are stale, largest first. */
export async function staleTables(db: Sql): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       CROSS JOIN LATERAL (SELECT pg_relation_size(c.oid) / current_setting('block_size')::int AS pages) s
      WHERE c.relkind IN ('r', 'm')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND s.pages > 0
        AND (c.reltuples < 0 OR abs(s.pages - c.relpages) > $1::float8 * c.relpages)
      ORDER BY s.pages DESC`,
    [STALE_SHARE],
  );
  return rows.map((r) => r.name);
}

/** ANALYZEs the stale tables (see staleTables), one statement each; returns their names. */
export async function analyzeStaleTables(db: Sql): Promise<string[]> {
  const stale = await staleTables(db);
  for (const table of stale) await db.query(`ANALYZE ${table}`);
  return stale;
}
