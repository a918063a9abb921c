import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { HashedFileWriter } from './hashed-file.js';
import type { Database, Sql } from './sql.js';

/**
 * Logical backup and restore of the whole store, identical on PGlite and PostgreSQL: every
 * table of the public schema as JSON lines (one `row_to_json` per row, produced by the
 * database itself so both engines write the same text), plus manifest.json with the
 * columns, row count and sha256 of each file.
 *
 * Backup reads every table in one REPEATABLE READ, READ ONLY transaction: a consistent
 * snapshot. (On the embedded store that transaction holds the single PGlite session, so a
 * running standard server waits for the backup; on PostgreSQL nothing waits.) Rows are
 * read a page at a time by keyset pagination on the primary key, in byte order for text
 * keys (COLLATE "C"), so the files and their checksums do not depend on the database's
 * collation.
 *
 * Restore checks every file's checksum and the target's schema first, then in one
 * transaction empties all tables, loads them parents first (foreign keys), resets serial
 * sequences, and re-reads every table to compare row counts and checksums with the
 * manifest. Any difference rolls the whole restore back.
 */
export const STORE_BACKUP_FORMAT = 'parley-store-backup';
export const STORE_BACKUP_FORMAT_VERSION = 1;

export interface BackupColumn {
  name: string;
  /** format_type() of the column: bigint, text[], timestamp with time zone ... */
  type: string;
}

export interface BackupTable {
  name: string;
  file: string;
  columns: BackupColumn[];
  primaryKey: string[];
  rows: number;
  bytes: number;
  sha256: string;
}

export interface BackupManifest {
  format: typeof STORE_BACKUP_FORMAT;
  formatVersion: number;
  createdAt: string;
  engine: Database['engine'];
  /** Highest applied migration (schema_migrations), 0 when there is none. */
  schemaVersion: number;
  /** Parents before children: the order restore loads them. */
  tables: BackupTable[];
}

export interface BackupResult {
  dir: string;
  manifest: string;
  engine: Database['engine'];
  schemaVersion: number;
  tables: { name: string; rows: number }[];
  rows: number;
  bytes: number;
}

export interface RestoreStoreResult {
  dir: string;
  engine: Database['engine'];
  schemaVersion: number;
  tables: { name: string; rows: number; verified: boolean }[];
  rows: number;
}

export type StoreBackupErrorCode =
  | 'STORE_BACKUP_INVALID'
  | 'STORE_SCHEMA_MISMATCH'
  | 'STORE_NOT_EMPTY'
  | 'STORE_RESTORE_VERIFY_FAILED';

export class StoreBackupError extends Error {
  constructor(
    readonly code: StoreBackupErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const PAGE_ROWS = 2_000;
const INSERT_ROWS = 1_000;

interface TableInfo {
  name: string;
  columns: (BackupColumn & { generated: boolean; serial: boolean })[];
  primaryKey: string[];
}

function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Tables of the public schema, parents before children, ties by name. */
async function describeTables(sql: Sql): Promise<TableInfo[]> {
  const tables = await sql.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname COLLATE "C"`,
  );
  const columns = await sql.query<{
    table_name: string;
    name: string;
    type: string;
    generated: boolean;
    serial: boolean;
  }>(
    `SELECT c.relname AS table_name, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            (a.attgenerated <> '') AS generated,
            (pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL) AS serial
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY c.relname, a.attnum`,
  );
  const keys = await sql.query<{ table_name: string; name: string; ord: number }>(
    `SELECT c.relname AS table_name, a.attname AS name, array_position(i.indkey::int2[], a.attnum) AS ord
       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
      WHERE n.nspname = 'public' AND i.indisprimary ORDER BY c.relname, 3`,
  );
  const references = await sql.query<{ child: string; parent: string }>(
    `SELECT cc.relname AS child, pc.relname AS parent FROM pg_constraint k
       JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_class pc ON pc.oid = k.confrelid
       JOIN pg_namespace n ON n.oid = cc.relnamespace
      WHERE k.contype = 'f' AND n.nspname = 'public'`,
  );
  const info = new Map<string, TableInfo>();
  for (const { name } of tables.rows) info.set(name, { name, columns: [], primaryKey: [] });
  for (const c of columns.rows)
    info
      .get(c.table_name)
      ?.columns.push({ name: c.name, type: c.type, generated: c.generated, serial: c.serial });
  for (const k of keys.rows) info.get(k.table_name)?.primaryKey.push(k.name);
  const parents = new Map<string, Set<string>>([...info.keys()].map((t) => [t, new Set<string>()]));
  for (const r of references.rows)
    if (r.child !== r.parent && info.has(r.parent)) parents.get(r.child)?.add(r.parent);
  const ordered: TableInfo[] = [];
  const placed = new Set<string>();
  while (ordered.length < info.size) {
    const ready = [...info.keys()].filter(
      (t) => !placed.has(t) && [...parents.get(t)!].every((p) => placed.has(p)),
    );
    // A cycle of foreign keys: fall back to name order for what is left.
    const next = ready.length > 0 ? ready : [...info.keys()].filter((t) => !placed.has(t));
    for (const t of next.sort()) {
      placed.add(t);
      ordered.push(info.get(t)!);
    }
  }
  return ordered;
}

/** SELECTs returning one JSON text per row, in key order (byte order for text), a page at a time. */
async function* tableRows(sql: Sql, table: TableInfo): AsyncGenerator<string[]> {
  const textual = (type: string) => /^(text|character|"char"|name|citext)/.test(type);
  const keyColumns = table.primaryKey.map((k) => table.columns.find((c) => c.name === k)!);
  if (keyColumns.length === 0) {
    // No primary key: order by the row's own JSON text; OFFSET paging is good enough for such tables.
    for (let offset = 0; ; offset += PAGE_ROWS) {
      const { rows } = await sql.query<{ j: string }>(
        `SELECT row_to_json(t)::text AS j FROM ${quote(table.name)} t ORDER BY row_to_json(t)::text COLLATE "C" LIMIT ${PAGE_ROWS} OFFSET ${offset}`,
      );
      if (rows.length > 0) yield rows.map((r) => r.j);
      if (rows.length < PAGE_ROWS) return;
    }
  }
  const order = keyColumns.map((c) => `t.${quote(c.name)}${textual(c.type) ? ' COLLATE "C"' : ''}`);
  const params = keyColumns.map((c, i) => `$${i + 1}::${c.type}${textual(c.type) ? ' COLLATE "C"' : ''}`);
  const keys = keyColumns.map((c, i) => `t.${quote(c.name)}::text AS k${i}`);
  let after: (string | null)[] | undefined;
  for (;;) {
    const where = after ? `WHERE (${order.join(', ')}) > (${params.join(', ')})` : '';
    const { rows } = await sql.query<Record<string, string>>(
      `SELECT row_to_json(t)::text AS j, ${keys.join(', ')} FROM ${quote(table.name)} t ${where}
        ORDER BY ${order.join(', ')} LIMIT ${PAGE_ROWS}`,
      after ?? [],
    );
    if (rows.length > 0) yield rows.map((r) => r.j);
    if (rows.length < PAGE_ROWS) return;
    const last = rows[rows.length - 1];
    after = keyColumns.map((_, i) => last[`k${i}`]);
  }
}

/** Session settings that change how row_to_json prints values. */
async function pinOutputSettings(tx: Sql): Promise<void> {
  await tx.query("SET LOCAL TimeZone = 'UTC'");
  await tx.query("SET LOCAL IntervalStyle = 'postgres'");
  await tx.query('SET LOCAL extra_float_digits = 1');
}

async function schemaVersion(sql: Sql, tables: TableInfo[]): Promise<number> {
  if (!tables.some((t) => t.name === 'schema_migrations')) return 0;
  const { rows } = await sql.query<{ v: number | null }>(
    'SELECT max(version)::int AS v FROM schema_migrations',
  );
  return rows[0].v ?? 0;
}

export async function backupStore(
  db: Database,
  options: { out: string; now?: () => Date; onProgress?: (table: string, rows: number) => void },
): Promise<BackupResult> {
  await mkdir(options.out, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  try {
    const manifest = await db.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      await pinOutputSettings(tx);
      const tables = await describeTables(tx);
      const result: BackupManifest = {
        format: STORE_BACKUP_FORMAT,
        formatVersion: STORE_BACKUP_FORMAT_VERSION,
        createdAt: (options.now?.() ?? new Date()).toISOString(),
        engine: db.engine,
        schemaVersion: await schemaVersion(tx, tables),
        tables: [],
      };
      for (const table of tables) {
        const file = `${table.name}.jsonl`;
        const out = new HashedFileWriter(join(options.out, file));
        written.push(out.temporary);
        let rows = 0;
        try {
          for await (const page of tableRows(tx, table)) {
            rows += page.length;
            await out.write(`${page.join('\n')}\n`);
            options.onProgress?.(table.name, rows);
          }
          const { bytes, sha256 } = await out.commit();
          result.tables.push({
            name: table.name,
            file,
            columns: table.columns.map((c) => ({ name: c.name, type: c.type })),
            primaryKey: table.primaryKey,
            rows,
            bytes,
            sha256,
          });
        } catch (err) {
          await out.abort();
          throw err;
        }
      }
      return result;
    });
    const manifestPath = join(options.out, 'manifest.json');
    const temporary = `${manifestPath}.${process.pid}.tmp`;
    const writer = createWriteStream(temporary, { mode: 0o600 });
    writer.end(`${JSON.stringify(manifest, null, 2)}\n`);
    await once(writer, 'finish');
    await rename(temporary, manifestPath);
    return {
      dir: options.out,
      manifest: manifestPath,
      engine: manifest.engine,
      schemaVersion: manifest.schemaVersion,
      tables: manifest.tables.map((t) => ({ name: t.name, rows: t.rows })),
      rows: manifest.tables.reduce((n, t) => n + t.rows, 0),
      bytes: manifest.tables.reduce((n, t) => n + t.bytes, 0),
    };
  } catch (err) {
    for (const path of written) await rm(path, { force: true });
    throw err;
  }
}

export async function readBackupManifest(dir: string): Promise<BackupManifest> {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as BackupManifest;
  } catch (err) {
    throw new StoreBackupError(
      'STORE_BACKUP_INVALID',
      `${join(dir, 'manifest.json')} cannot be read: ${(err as Error).message}`,
    );
  }
  if (manifest.format !== STORE_BACKUP_FORMAT || manifest.formatVersion !== STORE_BACKUP_FORMAT_VERSION) {
    throw new StoreBackupError(
      'STORE_BACKUP_INVALID',
      `${dir} is not a Parley store backup (format ${STORE_BACKUP_FORMAT} ${STORE_BACKUP_FORMAT_VERSION})`,
    );
  }
  for (const table of manifest.tables) {
    if (!/^[A-Za-z0-9_]+\.jsonl$/.test(table.file)) {
      throw new StoreBackupError(
        'STORE_BACKUP_INVALID',
        `manifest names an unexpected file ${JSON.stringify(table.file)}`,
      );
    }
  }
  return manifest;
}

/** Checks every file of a backup against its manifest without touching any database. */
export async function verifyBackupFiles(dir: string, manifest: BackupManifest): Promise<void> {
  for (const table of manifest.tables) {
    const path = join(dir, table.file);
    const info = await stat(path).catch(() => undefined);
    if (!info) throw new StoreBackupError('STORE_BACKUP_INVALID', `${path} is missing`);
    const hash = createHash('sha256');
    let lines = 0;
    for await (const chunk of createReadStream(path)) {
      hash.update(chunk as Buffer);
      for (const byte of chunk as Buffer) if (byte === 10) lines++;
    }
    if (hash.digest('hex') !== table.sha256 || lines !== table.rows) {
      throw new StoreBackupError(
        'STORE_BACKUP_INVALID',
        `${path} does not match its manifest (checksum or row count): the backup is damaged`,
      );
    }
  }
}

export async function restoreStore(
  db: Database,
  options: { from: string; force?: boolean; onProgress?: (table: string, rows: number) => void },
): Promise<RestoreStoreResult> {
  const manifest = await readBackupManifest(options.from);
  await verifyBackupFiles(options.from, manifest);
  const restored = await db.transaction(async (tx) => {
    await pinOutputSettings(tx);
    const tables = await describeTables(tx);
    checkSchema(manifest, tables);
    if (!options.force) {
      for (const table of tables) {
        if (table.name === 'schema_migrations') continue;
        const { rows } = await tx.query(`SELECT 1 FROM ${quote(table.name)} LIMIT 1`);
        if (rows.length > 0) {
          throw new StoreBackupError(
            'STORE_NOT_EMPTY',
            `the target store is not empty (table ${table.name} has rows)`,
          );
        }
      }
    }
    const byName = new Map(tables.map((t) => [t.name, t]));
    await tx.query(`TRUNCATE ${tables.map((t) => quote(t.name)).join(', ')} RESTART IDENTITY`);
    for (const entry of manifest.tables) {
      const table = byName.get(entry.name)!;
      const columns = table.columns.filter((c) => !c.generated).map((c) => quote(c.name));
      const insert = `INSERT INTO ${quote(table.name)} (${columns.join(', ')}) OVERRIDING SYSTEM VALUE
        SELECT ${columns.join(', ')} FROM json_populate_recordset(NULL::${quote(table.name)}, $1::json)`;
      let batch: string[] = [];
      let rows = 0;
      const flush = async () => {
        if (batch.length === 0) return;
        await tx.query(insert, [`[${batch.join(',')}]`]);
        rows += batch.length;
        options.onProgress?.(table.name, rows);
        batch = [];
      };
      const lines = createInterface({
        input: createReadStream(join(options.from, entry.file)),
        crlfDelay: Number.POSITIVE_INFINITY,
      });
      for await (const line of lines) {
        batch.push(line);
        if (batch.length >= INSERT_ROWS) await flush();
      }
      await flush();
    }
    for (const table of tables) {
      for (const column of table.columns.filter((c) => c.serial)) {
        await tx.query(
          `SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT max(${quote(column.name)}) FROM ${quote(table.name)}), 0) + 1, false)`,
          [quote(table.name), column.name],
        );
      }
    }
    // Verification: the restored tables must print exactly what was backed up.
    const verified: RestoreStoreResult['tables'] = [];
    for (const entry of manifest.tables) {
      const hash = createHash('sha256');
      let rows = 0;
      for await (const page of tableRows(tx, byName.get(entry.name)!)) {
        rows += page.length;
        hash.update(`${page.join('\n')}\n`);
      }
      const sha256 = rows === 0 ? createHash('sha256').digest('hex') : hash.digest('hex');
      if (rows !== entry.rows || sha256 !== entry.sha256) {
        throw new StoreBackupError(
          'STORE_RESTORE_VERIFY_FAILED',
          `table ${entry.name} reads back ${rows} row(s) with sha256 ${sha256.slice(0, 12)}..., the backup has ${entry.rows} with ${entry.sha256.slice(0, 12)}...`,
        );
      }
      verified.push({ name: entry.name, rows, verified: true });
    }
    return verified;
  });
  return {
    dir: options.from,
    engine: db.engine,
    schemaVersion: manifest.schemaVersion,
    tables: restored,
    rows: restored.reduce((n, t) => n + t.rows, 0),
  };
}

function checkSchema(manifest: BackupManifest, tables: TableInfo[]): void {
  const target = new Map(tables.map((t) => [t.name, t]));
  const problems: string[] = [];
  for (const entry of manifest.tables) {
    const table = target.get(entry.name);
    if (!table) {
      problems.push(`table ${entry.name} is missing`);
      continue;
    }
    const have = table.columns.map((c) => `${c.name} ${c.type}`).join(', ');
    const want = entry.columns.map((c) => `${c.name} ${c.type}`).join(', ');
    if (have !== want) problems.push(`table ${entry.name} has columns (${have}), the backup (${want})`);
  }
  const backedUp = new Set(manifest.tables.map((t) => t.name));
  for (const name of target.keys())
    if (!backedUp.has(name)) problems.push(`table ${name} is not in the backup`);
  if (problems.length > 0) {
    throw new StoreBackupError(
      'STORE_SCHEMA_MISMATCH',
      `the target store's schema differs from the backup's: ${problems.join('; ')}`,
    );
  }
}
