import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Database } from './sql.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export interface MigrationResult {
  /** Versions this run applied, in order. */
  applied: { version: number; name: string }[];
  /** Highest version recorded after the run (0 for an empty store). */
  current: number;
}

const MIGRATION_FILE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

/** Advisory lock key shared by every Parley process migrating the same database ("PRLYMIGR"). */
const MIGRATION_LOCK_KEY = 0x50524c594d494752n;

/**
 * Finds src/store/migrations. tsc does not copy .sql files, so the built CLI
 * (dist/src/store/migrate.js) cannot read them beside itself. We look beside this module
 * first (running from src under vitest/tsx, or a build that copies them), then walk up to
 * the package root (the folder whose package.json is Parley's) and use src/store/migrations
 * there. A packaged install therefore needs src/store/migrations in the package files.
 */
export function migrationsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const beside = join(here, 'migrations');
  if (existsSync(beside)) return beside;
  let dir = here;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const candidate = join(dir, 'src', 'store', 'migrations');
      if (existsSync(candidate)) return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`migrations folder not found from ${here}`);
    dir = parent;
  }
}

export function loadMigrations(dir = migrationsDir()): Migration[] {
  const migrations: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const match = MIGRATION_FILE.exec(file);
    if (!match) continue;
    migrations.push({
      version: Number(match[1]),
      name: match[2],
      sql: readFileSync(join(dir, file), 'utf8'),
    });
  }
  const seen = new Set<number>();
  for (const m of migrations) {
    if (seen.has(m.version)) throw new Error(`two migrations share version ${m.version} in ${dir}`);
    seen.add(m.version);
  }
  return migrations.sort((a, b) => a.version - b.version);
}

/**
 * Applies every migration not yet recorded in schema_migrations, each in its own
 * transaction. Each transaction first takes a transaction-scoped advisory lock and then
 * re-reads what is applied, so two front-ends starting at once on one PostgreSQL
 * serialize: the second finds the work done and skips it. Re-running is a no-op. A run that
 * applied any ends with ANALYZE.
 */
export async function migrate(
  db: Database,
  migrations: Migration[] = loadMigrations(),
): Promise<MigrationResult> {
  const applied: MigrationResult['applied'] = [];
  const lock = async (tx: { query: Database['query'] }) => {
    await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY.toString()]);
  };
  await db.transaction(async (tx) => {
    await lock(tx);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
  });
  for (const migration of migrations) {
    await db.transaction(async (tx) => {
      await lock(tx);
      const done = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [migration.version]);
      if (done.rows.length > 0) return;
      await tx.exec(migration.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        migration.version,
        migration.name,
      ]);
      applied.push({ version: migration.version, name: migration.name });
    });
  }
  // A migration may add, fill or rewrite tables: planner statistics afresh (PGlite has no autovacuum).
  if (applied.length > 0) await db.exec('ANALYZE');
  return { applied, current: await currentVersion(db) };
}

export async function currentVersion(db: Database): Promise<number> {
  const res = await db.query<{ version: number | null }>(
    'SELECT max(version) AS version FROM schema_migrations',
  );
  return res.rows[0]?.version ?? 0;
}

export async function appliedMigrations(
  db: Database,
): Promise<{ version: number; name: string; appliedAt: Date }[]> {
  const res = await db.query<{ version: number; name: string; applied_at: Date }>(
    'SELECT version, name, applied_at FROM schema_migrations ORDER BY version',
  );
  return res.rows.map((r) => ({ version: r.version, name: r.name, appliedAt: r.applied_at }));
}
