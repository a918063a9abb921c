import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { claimEmbeddedOwner, ownedByMe, readEmbeddedOwner, releaseEmbeddedOwner } from './embedded.js';
import { migrate } from './migrate.js';
import { createPgliteDatabase } from './pglite.js';
import type { Database } from './sql.js';

export interface OpenDatabaseOptions {
  /** Folder of the embedded store (PGlite in `<dataDir>/pgdata`); used when url is absent. */
  dataDir?: string;
  /** postgresql:// URL of a shared PostgreSQL (pools). */
  url?: string;
  /** Apply pending migrations after opening (default true; idempotent and locked). */
  migrate?: boolean;
  /** Pool size for the postgres engine. */
  maxConnections?: number;
  /**
   * How long to wait for a data folder held by another short-lived process (an admin
   * command that opened it without serving it) before giving up; default 0.
   */
  waitForFolderMs?: number;
  /**
   * PGlite's shared_buffers (PostgreSQL syntax, e.g. `32MB`); default PostgreSQL's 128MB.
   * PGlite fills its whole buffer pool when it starts, so this is resident from the open
   * on: a short admin command that reads its rows about once gains little from a large one.
   * The embedded engine opened in this process only.
   */
  sharedBuffers?: string;
}

/**
 * The embedded store's buffer pool for the admin jobs that read or write each row about once
 * (directory sync, contact-list import, export and restore, db backup and restore): a
 * larger pool buys them little and is resident from the open on. A 100,000 x 50 contact-list
 * import peaked at 531 MiB of RSS with 128MB and 366 MiB with 32MB, for the same CPU
 * (bench/README.md); a db restore of 1,060,010 rows at 529 and 394 MiB
 * (docs/contact-list-xml.md, Store backup).
 */
export const BULK_JOB_SHARED_BUFFERS = '32MB';

export class DataFolderInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(`the data folder ${dataDir} is open in process ${pid}, which does not serve it to other processes`);
  }
}

/**
 * True when the folder holds an embedded store (PGlite's cluster in `<dataDir>/pgdata`), or
 * a live server serves one from it: admin commands use a store, they never create one.
 */
export function embeddedStoreExists(dataDir: string): boolean {
  const dir = resolve(dataDir);
  return existsSync(join(dir, 'pgdata', 'PG_VERSION')) || readEmbeddedOwner(dir)?.url !== undefined;
}

/**
 * url -> PostgreSQL. Otherwise the embedded store in dataDir: if a live process owns the
 * folder and serves it (serveEmbeddedDatabase), connect to it as PostgreSQL over its
 * socket; if it owns it without serving, fail with DataFolderInUseError; else open the
 * folder with PGlite and own it until close().
 */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  const deadline = Date.now() + (opts.waitForFolderMs ?? 0);
  let db: Database;
  for (;;) {
    try {
      db = await openEngine(opts);
      break;
    } catch (err) {
      if (!(err instanceof DataFolderInUseError) || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  if (opts.migrate ?? true) {
    try {
      await migrate(db);
    } catch (err) {
      await db.close();
      throw err;
    }
  }
  return db;
}

/**
 * The PostgreSQL engine (and node-postgres with it) is loaded only when a store is reached
 * through it: a CLI on a data folder it owns does not pay for loading it (about 0.1 CPU-s).
 */
async function createPostgresDatabase(
  ...args: Parameters<typeof import('./postgres.js').createPostgresDatabase>
): Promise<Database> {
  return (await import('./postgres.js')).createPostgresDatabase(...args);
}

async function openEngine(opts: OpenDatabaseOptions): Promise<Database> {
  if (opts.url)
    return createPostgresDatabase(opts.url, { max: opts.maxConnections, prepare: true, copy: true });
  if (!opts.dataDir) throw new Error('openDatabase needs a dataDir or a url');
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const owner = readEmbeddedOwner(dataDir);
  if (owner?.url) return createPostgresDatabase(owner.url, { max: opts.maxConnections ?? 4 });
  if (owner) throw new DataFolderInUseError(dataDir, owner.pid);
  const claimed = claimEmbeddedOwner(dataDir);
  if (!ownedByMe(claimed)) {
    // Lost a race with another process opening the folder at the same moment.
    if (claimed.url) return createPostgresDatabase(claimed.url, { max: opts.maxConnections ?? 4 });
    throw new DataFolderInUseError(dataDir, claimed.pid);
  }
  try {
    const db = await createPgliteDatabase(dataDir, { sharedBuffers: opts.sharedBuffers });
    db.onClose(() => releaseEmbeddedOwner(dataDir));
    return db;
  } catch (err) {
    releaseEmbeddedOwner(dataDir);
    throw err;
  }
}
