/**
 * The one seam between Parley's repositories and a database engine. Both engines (PGlite
 * for the embedded store, `pg` for PostgreSQL) speak the same dialect, so every repository
 * is written once against this interface and runs on either.
 */
export interface QueryResult<Row> {
  rows: Row[];
  /** Rows inserted, updated or deleted by the statement (0 for a plain SELECT). */
  affectedRows: number;
}

export interface Sql {
  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>>;
  /** Runs a script of one or more statements without parameters (simple query protocol): migrations. */
  exec(script: string): Promise<void>;
  /** Runs fn inside BEGIN/COMMIT; a throw rolls back. Nested calls reuse the outer transaction. */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /**
   * COPY table (columns) FROM data, data in PostgreSQL's COPY text format (copyTextField
   * escapes a field): the fastest bulk insert, where the engine offers it to this process
   * (PGlite's COPY FROM '/dev/blob', PostgreSQL's COPY FROM STDIN). Absent otherwise (a
   * client of the embedded socket): callers fall back to INSERT ... SELECT FROM unnest(...).
   */
  copyFrom?(table: string, columns: readonly string[], data: string): Promise<void>;
}

/** A field of COPY's text format (PostgreSQL docs, COPY, "Text Format"): backslash escapes. */
export function copyTextField(value: string): string {
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]) : value;
}

const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** The value of a field copyTextField made: its escapes undone. */
export function copyTextValue(field: string): string {
  return field.includes('\\') ? field.replace(/\\(.)/g, (_, c: string) => COPY_UNESCAPES[c] ?? c) : field;
}

const COPY_UNESCAPES: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };

/** A json or jsonb column's value: as the driver parsed it, or parsed here when it came as text. */
export function jsonColumn<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

/** An SQL identifier, quoted (a table, a column, a LISTEN channel). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `COPY table (columns) FROM source`: the statement both engines' copyFrom send. */
export function copyStatement(table: string, columns: readonly string[], source: string): string {
  return `COPY ${quoteIdent(table)} (${columns.map(quoteIdent).join(', ')}) FROM ${source}`;
}

/**
 * What a listener that caches learns about the feed itself: notifications sent while the
 * LISTEN connection was down are lost, so a cache must stop trusting itself on `lost` and
 * reload (or start empty) on `resumed`, once LISTEN is in place again.
 */
export interface FeedEvents {
  lost?: () => void;
  resumed?: () => void;
}

/** A database change feed: PostgreSQL LISTEN/NOTIFY, or in-process for PGlite (never lost). */
export interface ChangeFeed {
  listen(
    channel: string,
    onPayload: (payload: string) => void,
    events?: FeedEvents,
  ): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
}

export interface Database extends Sql, ChangeFeed {
  readonly engine: 'pglite' | 'postgres';
  close(): Promise<void>;
}

/** Error codes of a database connection that went away (node's socket errors, PostgreSQL's). */
const CONNECTION_LOST_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ENOENT',
  'ETIMEDOUT',
  'ENOTCONN',
]);

/**
 * Did this error come from losing the database (its server killed, restarted or unreachable)
 * rather than from a statement? SQLSTATE class 08 is "connection exception"; 57P01-57P03 are
 * the server shutting down or not yet accepting; `pg` reports a socket that ends mid-query
 * with a plain message and no code.
 */
export function isConnectionLost(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (CONNECTION_LOST_CODES.has(code) || code.startsWith('08')) return true;
    if (code === '57P01' || code === '57P02' || code === '57P03') return true;
  }
  return /Connection terminated|connection error and is not queryable|Client was closed|terminating connection/i.test(
    err.message,
  );
}
