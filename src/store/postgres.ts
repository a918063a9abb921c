import pg from 'pg';
import { IO_CHUNK } from './io-chunk.js';
import {
  copyStatement,
  type Database,
  type FeedEvents,
  type QueryResult,
  quoteIdent,
  type Sql,
} from './sql.js';

/**
 * int8 (bigserial ids, counts) parsed as numbers, as PGlite does, so repositories see the
 * same types on both engines. Parley's ids stay far below 2^53.
 */
const INT8_OID = 20;
const parley_types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
};

type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * Names for prepared statements, one per distinct SQL text: PostgreSQL then parses and plans a
 * statement once per connection instead of on every call (the pool asks for bindings on
 * every MESSAGE). Bounded, so generated SQL texts cannot grow it without end.
 */
const statementNames = new Map<string, string>();
const MAX_NAMED_STATEMENTS = 1_000;

function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_NAMED_STATEMENTS) {
    name = `parley_${statementNames.size.toString(36)}`;
    statementNames.set(text, name);
  }
  return name;
}

async function runQuery<Row>(
  client: Queryable,
  text: string,
  params: unknown[] | undefined,
  prepare: boolean,
): Promise<QueryResult<Row>> {
  const name = prepare && params && params.length > 0 ? statementName(text) : undefined;
  const res = name
    ? await client.query({ name, text, values: params })
    : await client.query(text, params as unknown[] | undefined);
  // A multi-statement text returns an array of results; callers use exec() for that.
  return { rows: res.rows as Row[], affectedRows: res.command === 'SELECT' ? 0 : (res.rowCount ?? 0) };
}

/** What COPY FROM STDIN needs of pg's connection (pg has it; its type declarations do not). */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/**
 * COPY ... FROM STDIN through pg's Submittable interface (client.query(submittable) hands it
 * the connection and the backend's messages): send the statement, answer CopyInResponse
 * with the data as CopyData messages and CopyDone, settle on ReadyForQuery, or on the
 * first error (an ErrorResponse, a lost connection).
 */
class CopyFromStdin {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (err: Error) => void;
  private failed = false;

  constructor(
    private readonly text: string,
    private readonly data: string,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  submit(connection: unknown): void {
    (connection as CopyConnection).query(this.text);
  }

  handleCopyInResponse(connection: unknown): void {
    const con = connection as CopyConnection;
    // CopyData messages of about IO_CHUNK characters, cut after a line end, so no chunk
    // splits a character (a surrogate pair) in two.
    for (let at = 0; at < this.data.length; ) {
      const cut = this.data.indexOf('\n', at + IO_CHUNK);
      const end = cut === -1 ? this.data.length : cut + 1;
      con.sendCopyFromChunk(Buffer.from(this.data.slice(at, end)));
      at = end;
    }
    con.endCopyFrom();
  }

  handleCommandComplete(): void {}

  handleError(err: Error): void {
    this.failed = true;
    this.reject(err);
  }

  handleReadyForQuery(): void {
    if (!this.failed) this.resolve();
  }
}

class PostgresTransaction implements Sql {
  constructor(
    private readonly client: pg.PoolClient,
    private readonly prepare: boolean,
    copy: boolean,
  ) {
    if (!copy) this.copyFrom = undefined;
  }

  /** COPY FROM STDIN, on a connection to PostgreSQL (not the embedded socket: see `copy`). */
  async copyFrom?(table: string, columns: readonly string[], data: string): Promise<void> {
    const copy = new CopyFromStdin(copyStatement(table, columns, 'STDIN'), data);
    this.client.query(copy);
    await copy.done;
  }

  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
    return runQuery<Row>(this.client, text, params, this.prepare);
  }

  async exec(script: string): Promise<void> {
    await this.client.query(script);
  }

  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    return fn(this);
  }
}

/**
 * LISTEN on one dedicated connection (a pooled one would lose its LISTENs when recycled).
 * When the connection drops it reconnects with backoff and LISTENs again on every channel;
 * notifications sent while it was down are lost, so subscribers should reload their
 * state on reconnect if they cache (they get no payload for the gap).
 */
interface Subscriber {
  onPayload: (payload: string) => void;
  events?: FeedEvents;
}

class ListenConnection {
  private client?: pg.Client;
  private connecting?: Promise<pg.Client>;
  private readonly handlers = new Map<string, Set<Subscriber>>();
  private closed = false;
  /** The connection went since the last LISTEN: subscribers hear `resumed` once it is back. */
  private gap = false;
  private retryMs = 100;
  private retryTimer?: NodeJS.Timeout;

  constructor(private readonly config: pg.ClientConfig) {}

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const client = new pg.Client(this.config);
      client.on('notification', (msg) => {
        for (const s of this.handlers.get(msg.channel) ?? []) s.onPayload(msg.payload ?? '');
      });
      client.on('error', () => this.lost(client));
      client.on('end', () => this.lost(client));
      try {
        await client.connect();
        for (const channel of this.handlers.keys()) await client.query(`LISTEN ${quoteIdent(channel)}`);
      } catch (err) {
        this.connecting = undefined;
        client.end().catch(() => {});
        throw err;
      }
      this.client = client;
      this.connecting = undefined;
      this.retryMs = 100;
      if (this.gap) {
        this.gap = false;
        this.tell((s) => s.events?.resumed?.());
      }
      return client;
    })();
    return this.connecting;
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => {});
    if (!this.closed) {
      this.gap = true;
      this.tell((s) => s.events?.lost?.());
    }
    this.scheduleReconnect();
  }

  private tell(fn: (s: Subscriber) => void): void {
    for (const set of this.handlers.values()) {
      for (const s of set) {
        try {
          fn(s);
        } catch {
          // One subscriber's failure must not keep the others from hearing.
        }
      }
    }
  }

  private scheduleReconnect(): void {
    if (this.closed || this.handlers.size === 0 || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect().catch(() => {
        this.retryMs = Math.min(this.retryMs * 2, 5_000);
        this.scheduleReconnect();
      });
    }, this.retryMs);
    this.retryTimer.unref();
  }

  async listen(
    channel: string,
    onPayload: (payload: string) => void,
    events?: FeedEvents,
  ): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel);
    const first = !set;
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    const handler: Subscriber = { onPayload, events };
    set.add(handler);
    const client = await this.connect();
    if (first) await client.query(`LISTEN ${quoteIdent(channel)}`);
    return async () => {
      const current = this.handlers.get(channel);
      if (!current?.delete(handler) || current.size > 0) return;
      this.handlers.delete(channel);
      await this.client?.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => {});
    };
  }

  /** Test hook: drops the connection as a network failure would. */
  dropConnection(): void {
    this.client?.emit('error', new Error('connection dropped'));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}

export class PostgresDatabase implements Database {
  readonly engine = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly listener: ListenConnection;

  private readonly prepare: boolean;
  /** Whether transactions offer copyFrom (COPY FROM STDIN): not through the embedded socket. */
  private readonly copy: boolean;

  constructor(url: string, options: PostgresOptions = {}) {
    this.prepare = options.prepare ?? false;
    this.copy = options.copy ?? false;
    const config: pg.PoolConfig = { connectionString: url, types: parley_types, max: options.max ?? 10 };
    this.pool = new pg.Pool(config);
    // An idle client's error (server restart) must not crash the process; the pool discards it.
    this.pool.on('error', () => {});
    this.listener = new ListenConnection({ connectionString: url, types: parley_types });
  }

  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
    return runQuery<Row>(this.pool, text, params, this.prepare);
  }

  async exec(script: string): Promise<void> {
    await this.pool.query(script);
  }

  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // A checked-out client has no listener of the pool's: without one, a server that dies
    // mid-transaction emits an 'error' nobody handles and takes the process down. The
    // statement in flight rejects with the same error, which the caller sees.
    const lost = () => {};
    client.on('error', lost);
    try {
      await client.query('BEGIN');
      const result = await fn(new PostgresTransaction(client, this.prepare, this.copy));
      await client.query('COMMIT');
      client.off('error', lost);
      client.release();
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
        client.off('error', lost);
        client.release();
      } catch {
        // The connection is broken: destroy it rather than return it to the pool.
        client.release(true);
      }
      throw err;
    }
  }

  listen(
    channel: string,
    onPayload: (payload: string) => void,
    events?: FeedEvents,
  ): Promise<() => Promise<void>> {
    return this.listener.listen(channel, onPayload, events);
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  /** Test hook: simulates losing the LISTEN connection. */
  dropListenConnection(): void {
    this.listener.dropConnection();
  }

  async close(): Promise<void> {
    await this.listener.close();
    await this.pool.end();
  }
}

/**
 * `prepare` names statements (a real PostgreSQL server). Not for an embedded store served over
 * its socket: its admin clients share one PGlite session, where names would collide.
 */
export interface PostgresOptions {
  max?: number;
  /** Named prepared statements (a PostgreSQL server; not the embedded socket). */
  prepare?: boolean;
  /**
   * COPY FROM STDIN for bulk writes (Sql.copyFrom) on a PostgreSQL server. Not for the
   * embedded socket: PGlite takes COPY data only from a blob handed to it in-process.
   */
  copy?: boolean;
}

export function createPostgresDatabase(url: string, options: PostgresOptions = {}): PostgresDatabase {
  return new PostgresDatabase(url, options);
}
