import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EmbeddedDatabaseServer, serveEmbeddedDatabase } from '../../src/store/embedded.js';
import { loadMigrations, migrate } from '../../src/store/migrate.js';
import { openDatabase } from '../../src/store/open.js';
import { createPgliteDatabase, type PgliteDatabase, pgliteVersion } from '../../src/store/pglite.js';
import type { Sql } from '../../src/store/sql.js';

/**
 * Tests that need an empty, migrated embedded store get it from one template made per test
 * run (test/support/global-setup.ts makes it before the files start): a new PGlite cluster
 * plus the migrations is 5-10 s of WebAssembly on a two-core machine, a copy of the migrated
 * cluster 1-3 s. The template sits in the temp folder under a name that hashes the PGlite
 * version and every migration's text, so a new or changed migration makes a new template.
 *
 * - createTestDatabase(): a store of its own for code under test, a copy of the template in
 *   /dev/shm (memory-backed), removed when the database is closed: close it in afterAll.
 * - migratedDataFolder(dir): `dir` becomes the data folder of a standard server or of the
 *   CLI (`database.dataDir`), holding the migrated store as `parley db migrate` leaves it.
 *
 * Tests of how a store is created or migrated (db migrate, init, a first server start on an
 * empty folder) must not use these: they start from an empty folder on purpose.
 */
export async function createTestDatabase(): Promise<PgliteDatabase> {
  // A copy of the template's folder opens in about half the time the same cluster takes to
  // load from its tar into PGlite's in-memory file system.
  const dir = migratedDataFolder(mkdtempSync(join(memoryTmpdir(), 'parley-test-db-')));
  const db = await createPgliteDatabase(dir);
  db.onClose(() => rmSync(dir, { recursive: true, force: true }));
  return db;
}

/**
 * Where a test's store goes: /dev/shm (memory-backed) where there is one, so copying the
 * template and PGlite's writes cost no disk I/O; the temporary folder elsewhere.
 */
export function memoryTmpdir(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

/** Fills `dir` (made if missing, must hold no store yet) with a copy of the migrated store; returns dir. */
export function migratedDataFolder(dir: string): string {
  const pgdata = templatePgdata();
  if (existsSync(join(dir, 'pgdata'))) throw new Error(`${dir} already holds a store`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  cpSync(pgdata, join(dir, 'pgdata'), { recursive: true });
  return dir;
}

const TEMPLATE_PREFIX = 'parley-test-store-';

/**
 * Serves the store in `dir` (a data folder holding one, e.g. from migratedDataFolder) from
 * this process, as a running server does: CLI commands given that folder reach the store
 * through its socket instead of each starting PGlite itself (about 3 CPU-seconds a command
 * on a two-core machine, a fifth of that over the socket). For tests of what commands do,
 * not of how they open a folder. close() stops serving and closes the store.
 */
export async function serveDataFolder(dir: string): Promise<{ close(): Promise<void> }> {
  const db = (await openDatabase({ dataDir: dir, migrate: false })) as PgliteDatabase;
  let served: EmbeddedDatabaseServer;
  try {
    served = await serveEmbeddedDatabase(db, dir);
  } catch (err) {
    await db.close();
    throw err;
  }
  return {
    async close() {
      await served.close();
      await db.close();
    },
  };
}

function templateRoot(): string {
  const hash = createHash('sha256').update(pgliteVersion());
  for (const m of loadMigrations()) hash.update(`\0${m.version}\0${m.sql}`);
  return join(tmpdir(), `${TEMPLATE_PREFIX}${hash.digest('hex').slice(0, 16)}`);
}

let known: string | undefined;

/** The template's pgdata folder (a closed, migrated cluster). */
function templatePgdata(): string {
  if (known) return known;
  const root = templateRoot();
  if (!existsSync(root)) {
    throw new Error(`no migrated store template at ${root}: test/support/global-setup.ts makes it`);
  }
  known = join(root, 'data', 'pgdata');
  return known;
}

/**
 * Makes the template unless this run's already exists (global setup, once, before the test
 * files start). Built beside it and renamed into place, so a reader never sees half of it.
 */
export async function ensureStoreTemplate(): Promise<void> {
  const root = templateRoot();
  if (existsSync(root)) {
    // Marks it as in use for removeStaleStoreTemplates (another worktree's teardown).
    const now = new Date();
    utimesSync(root, now, now);
    return;
  }
  const partial = `${root}.${process.pid}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  try {
    const db = await createPgliteDatabase(join(partial, 'data'));
    try {
      await migrate(db);
    } finally {
      await db.close();
    }
    try {
      renameSync(partial, root);
    } catch (err) {
      // Another run (another worktree's suite) made it first: theirs is the same.
      if (!existsSync(root)) throw err;
    }
  } finally {
    rmSync(partial, { recursive: true, force: true });
  }
}

/** A template nobody has started a run with for this long is no run's any more. */
const STALE_AFTER_MS = 60 * 60 * 1000;

/**
 * Global teardown: removes the templates of other migration sets (an earlier checkout's, a
 * branch's) that no run has started with for an hour, and half-made ones as old (of runs
 * that died while making them). This run's own template stays: the next run with the same
 * migrations starts from it. A run of another worktree with other migrations, going on
 * now, touched its template when it started (ensureStoreTemplate), and a suite takes
 * minutes, not an hour, so its template is left alone.
 */
export function removeStaleStoreTemplates(now = Date.now()): string[] {
  const current = templateRoot();
  const removed: string[] = [];
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(TEMPLATE_PREFIX)) continue;
    const path = join(tmpdir(), name);
    if (path === current) continue;
    // Making a template (or its half-made folder) takes seconds: older than an hour, no run
    // is using or making it.
    const stale = now - statSync(path).mtimeMs > STALE_AFTER_MS;
    if (!stale) continue;
    rmSync(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

/** The number a one-row query names `n` (a count, reltuples): what a test checks of a table. */
export async function queryNumber(db: Sql, text: string, params?: unknown[]): Promise<number> {
  const { rows } = await db.query<{ n: number | string }>(text, params);
  return Number(rows[0].n);
}
