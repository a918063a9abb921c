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
}

/** A database change feed: PostgreSQL LISTEN/NOTIFY, or in-process for PGlite. */
export interface ChangeFeed {
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
}

export interface Database extends Sql, ChangeFeed {
  readonly engine: 'pglite' | 'postgres';
  close(): Promise<void>;
}
