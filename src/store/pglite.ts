import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { analyzeStaleTables } from './analyze.js';
import { copyStatement, type Database, type QueryResult, quoteIdent, type Sql } from './sql.js';

/**
 * A FIFO mutex. PGlite is one backend session: a transaction must own it from BEGIN to
 * COMMIT, or another caller's statement would run inside it. Every in-process statement,
 * every in-process transaction, and every transaction of a client served over the embedded
 * socket (see embedded.ts) holds this lock.
 */
export class SessionLock {
  private tail: Promise<void> = Promise.resolve();

  /** Resolves with a release function once the caller owns the session. */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const owned = new Promise<void>((resolve) => {
      release = resolve;
    });
    const ready = this.tail.then(() => release);
    this.tail = this.tail.then(() => owned);
    return ready;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

type PgliteTx = Parameters<Parameters<PGlite['transaction']>[0]>[0];

function toResult<Row>(res: { rows: unknown[]; affectedRows?: number }): QueryResult<Row> {
  return { rows: res.rows as Row[], affectedRows: res.affectedRows ?? 0 };
}

class PgliteTransaction implements Sql {
  constructor(private readonly tx: PgliteTx) {}

  async query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
    return toResult<Row>(await this.tx.query(text, params));
  }

  async exec(script: string): Promise<void> {
    await this.tx.exec(script);
  }

  /** Nested transactions reuse the outer one (the Sql contract), no savepoints. */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    return fn(this);
  }

  async copyFrom(table: string, columns: readonly string[], data: string): Promise<void> {
    await this.tx.query(copyStatement(table, columns, "'/dev/blob'"), [], { blob: new Blob([data]) });
  }
}

/** PGlite reads COPY ... FROM '/dev/blob' from the blob handed to the query. */
export class PgliteDatabase implements Database {
  readonly engine = 'pglite' as const;
  readonly lock = new SessionLock();
  private readonly handlers = new Map<string, Set<(payload: string) => void>>();

  constructor(
    /** The PGlite instance, exposed for the embedded socket server; do not query it directly. */
    readonly pglite: PGlite,
    /** The folder holding pgdata, undefined for an in-memory database. */
    readonly dataDir?: string,
  ) {
    pglite.onNotification((channel, payload) => this.dispatchNotification(channel, payload));
  }

  /**
   * Marks the async context of an open transaction's callback. A statement sent on the
   * database itself from there would wait for the transaction that waits for it: on
   * PostgreSQL it would run on another connection, here there is no other session, so we
   * fail fast instead of hanging. The flag is cleared when the transaction ends, so work
   * the callback started and that outlives it is not affected.
   *
   * The storage is enabled only while a transaction is open and disabled when it ends:
   * enabled, Node runs a promise hook for every promise of the process (not only ours), and
   * a server, whose migrations open transactions at its start, then paid it on every request
   * it handled. Transactions are one at a time (the session lock), so there is one to count.
   */
  private readonly inTransaction = new AsyncLocalStorage<{ open: boolean }>();

  private assertNotInTransaction(): void {
    if (this.inTransaction.getStore()?.open) {
      throw new Error(
        'a statement was sent on the database inside one of its transactions: use the transaction handle (tx) there',
      );
    }
  }

  async query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
    this.assertNotInTransaction();
    return this.lock.run(async () => toResult<Row>(await this.pglite.query(text, params)));
  }

  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    this.assertNotInTransaction();
    return this.lock.run(() =>
      this.pglite.transaction(async (tx) => {
        const marker = { open: true };
        try {
          return await this.inTransaction.run(marker, () => fn(new PgliteTransaction(tx)));
        } finally {
          marker.open = false;
          this.inTransaction.disable();
        }
      }),
    );
  }

  async exec(script: string): Promise<void> {
    this.assertNotInTransaction();
    await this.lock.run(async () => void (await this.pglite.exec(script)));
  }

  async copyFrom(table: string, columns: readonly string[], data: string): Promise<void> {
    this.assertNotInTransaction();
    await this.lock.run(async () => {
      await this.pglite.query(copyStatement(table, columns, "'/dev/blob'"), [], { blob: new Blob([data]) });
    });
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      // Quoted like PostgreSQL's LISTEN in postgres.ts, so channel names are case-exact on both engines.
      await this.query(`LISTEN ${quoteIdent(channel)}`);
    }
    set.add(onPayload);
    return async () => {
      const current = this.handlers.get(channel);
      if (!current?.delete(onPayload) || current.size > 0) return;
      this.handlers.delete(channel);
      if (!this.pglite.closed) await this.query(`UNLISTEN ${quoteIdent(channel)}`);
    };
  }

  /**
   * Delivers a notification to in-process listeners. PGlite calls it for statements run
   * here; the embedded socket server calls it for NOTIFYs sent by its clients, whose
   * responses bypass PGlite's own notification handling.
   */
  dispatchNotification(channel: string, payload: string): void {
    for (const handler of this.handlers.get(channel) ?? []) {
      try {
        handler(payload);
      } catch {
        // A listener's failure must not break the session that carried the notification.
      }
    }
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  private readonly closeHooks: (() => void)[] = [];

  /** Runs after the database closes (openDatabase releases the data folder's owner file). */
  onClose(hook: () => void): void {
    this.closeHooks.push(hook);
  }

  /**
   * Closes the store; a store in a data folder first ANALYZEs the tables that changed much
   * since their last statistics (analyze.ts: PGlite has no autovacuum), so that a command
   * that filled it (an import, a directory sync) leaves statistics the next process plans with.
   */
  async close(): Promise<void> {
    if (this.pglite.closed) return;
    if (this.dataDir !== undefined) await analyzeStaleTables(this).catch(() => undefined);
    await this.lock.run(() => this.pglite.close());
    for (const hook of this.closeHooks.splice(0)) hook();
  }
}

/**
 * Opens (creating if needed) the embedded store in `<dataDir>/pgdata`, or an in-memory
 * database when dataDir is undefined (tests). The caller must make sure no other process
 * has the folder open: see openDatabase, which checks the owner lock first.
 */
export async function createPgliteDatabase(
  dataDir?: string,
  opts: { sharedBuffers?: string } = {},
): Promise<PgliteDatabase> {
  let pgdata: string | undefined;
  if (dataDir) {
    pgdata = join(dataDir, 'pgdata');
    mkdirSync(pgdata, { recursive: true });
  }
  const fresh = !pgdata || !existsSync(join(pgdata, 'PG_VERSION'));
  const template = fresh ? await clusterTemplate() : undefined;
  const pglite = await PGlite.create({
    ...(pgdata ? { dataDir: pgdata } : {}),
    ...(template ? { loadDataDir: new Blob([template]) } : {}),
    // pg_trgm indexes the archive's bodies for `archive search --text` (009_archive_text_search.sql).
    extensions: { pg_trgm },
    startParams: [
      ...PGlite.defaultStartParams,
      // PGlite runs with fsync off (-F), so WAL files zero-filled when made (16 MiB each, a
      // sixtieth of a 100,000 x 50 import's WAL) buy nothing: made by writing their last
      // byte instead (COPY of an import's 5 million contact rows in one transaction, 18:36 UTC:
      // 4.2 -> 2.5 and 5.7 -> 3.3 CPU-s of the kernel's, two runs each, the engine's own the same).
      '-c',
      'wal_init_zero=off',
      ...(opts.sharedBuffers ? ['-c', `shared_buffers=${opts.sharedBuffers}`] : []),
    ],
  });
  return new PgliteDatabase(pglite, dataDir);
}

/**
 * A new PGlite cluster runs initdb inside WebAssembly, which takes 7 to 20 seconds on a
 * two-core machine; loading a copy of an empty cluster takes under one. The first cluster
 * this PGlite version makes is dumped once into the user's cache folder and every later new
 * store (a fresh data folder, an in-memory test database) starts from that copy. Without a
 * writable cache the cluster is simply made from scratch.
 */
function clusterTemplateFile(): string {
  return join(homedir(), '.cache', 'parley', `pglite-${pgliteVersion()}-cluster.tar`);
}

/** True when a new store starts from the cached empty cluster (about a second, not initdb's 7-20 s). */
export function clusterTemplateCached(): boolean {
  return existsSync(clusterTemplateFile());
}

async function clusterTemplate(): Promise<Buffer | undefined> {
  const file = clusterTemplateFile();
  try {
    return readFileSync(file);
  } catch {
    // Not made yet: make it below.
  }
  try {
    const blank = await PGlite.create();
    const tar = Buffer.from(await (await blank.dumpDataDir('none')).arrayBuffer());
    await blank.close();
    mkdirSync(dirname(file), { recursive: true });
    // Write then rename, so a process reading the template never sees half of it.
    const partial = `${file}.${process.pid}.partial`;
    writeFileSync(partial, tar);
    renameSync(partial, file);
    return tar;
  } catch {
    return undefined;
  }
}

/** The installed PGlite version: a dumped cluster loads only into the same one. */
export function pgliteVersion(): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
    for (let i = 0; i < 4; i++, dir = dirname(dir)) {
      const manifest = join(dir, 'package.json');
      if (existsSync(manifest)) {
        const { name, version } = JSON.parse(readFileSync(manifest, 'utf8')) as {
          name?: string;
          version?: string;
        };
        if (name === '@electric-sql/pglite' && version) return version;
      }
    }
  } catch {
    // Fall through.
  }
  return 'unknown';
}
