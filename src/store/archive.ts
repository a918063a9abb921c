import { copyTextField, type Sql } from './sql.js';

const ARCHIVE_COLUMNS = ['at', 'sender', 'recipient', 'content_type', 'body', 'size', 'result', 'server_id'];

/** The rows in COPY's text format, one line each. */
function copyRows(rows: readonly NewArchivedMessage[]): string {
  let data = '';
  for (const r of rows)
    data += `${r.at.toISOString()}\t${copyTextField(r.sender)}\t${copyTextField(r.recipient)}\t${copyTextField(r.contentType)}\t${copyTextField(r.body)}\t${r.size}\t${r.result}\t${copyTextField(r.serverId)}\n`;
  return data;
}

/** One archived instant message (RFC 3428 MESSAGE) as stored. */
export interface ArchivedMessageRecord {
  id: number;
  at: Date;
  sender: string;
  recipient: string;
  contentType: string;
  body: string;
  /** Body bytes. */
  size: number;
  /** Final status the sender got (0: none). */
  result: number;
  serverId: string;
}

export type NewArchivedMessage = Omit<ArchivedMessageRecord, 'id'>;

export interface ArchiveQuery {
  /** Messages from or to this user. */
  user?: string;
  /** ... exchanged with this user (the other party). */
  with?: string;
  since?: Date;
  until?: Date;
  /** Every word must appear in the body (case-insensitive). */
  words?: string[];
  /** Only rows after this id (keyset paging). */
  afterId?: number;
  limit: number;
}

interface ArchiveRow {
  id: number;
  at: Date | string;
  sender: string;
  recipient: string;
  content_type: string;
  body: string;
  size: number;
  result: number;
  server_id: string;
}

function toRecord(row: ArchiveRow): ArchivedMessageRecord {
  return {
    id: Number(row.id),
    at: row.at instanceof Date ? row.at : new Date(row.at),
    sender: row.sender,
    recipient: row.recipient,
    contentType: row.content_type,
    body: row.body,
    size: row.size,
    result: row.result,
    serverId: row.server_id,
  };
}

/** `%`, `_` and `\` taken literally in a LIKE pattern. */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, '\\$&');
}

/**
 * The archive table: batched inserts from the servers' archive writers, searches and exports
 * for `parley archive`, and the retention purge.
 */
export class ArchiveRepository {
  constructor(private readonly sql: Sql) {}

  /**
   * Writes a batch in one statement, so the cost per message stays small: COPY where the
   * engine offers it (PGlite's in-process COPY, PostgreSQL's COPY FROM STDIN in a
   * transaction: about half the work of the unnest form on PGlite), else INSERT ... SELECT
   * FROM unnest(...) (a client of the embedded socket).
   */
  async insertBatch(rows: readonly NewArchivedMessage[]): Promise<void> {
    if (rows.length === 0) return;
    if (this.sql.copyFrom) {
      await this.sql.copyFrom('archive', ARCHIVE_COLUMNS, copyRows(rows));
      return;
    }
    await this.sql.transaction(async (tx) => {
      if (tx.copyFrom) await tx.copyFrom('archive', ARCHIVE_COLUMNS, copyRows(rows));
      else
        await tx.query(
          `INSERT INTO archive (${ARCHIVE_COLUMNS.join(', ')})
           SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::text[])`,
          [
            rows.map((r) => r.at.toISOString()),
            rows.map((r) => r.sender),
            rows.map((r) => r.recipient),
            rows.map((r) => r.contentType),
            rows.map((r) => r.body),
            rows.map((r) => r.size),
            rows.map((r) => r.result),
            rows.map((r) => r.serverId),
          ],
        );
    });
  }

  /** Messages matching the query, oldest first. */
  async search(q: ArchiveQuery): Promise<ArchivedMessageRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.user && q.with) {
      const u = p(q.user);
      const w = p(q.with);
      where.push(`((sender = ${u} AND recipient = ${w}) OR (sender = ${w} AND recipient = ${u}))`);
    } else if (q.user) {
      const u = p(q.user);
      where.push(`(sender = ${u} OR recipient = ${u})`);
    }
    if (q.since) where.push(`at >= ${p(q.since.toISOString())}`);
    if (q.until) where.push(`at < ${p(q.until.toISOString())}`);
    for (const word of q.words ?? []) where.push(`body ILIKE ${p(`%${likeLiteral(word)}%`)}`);
    if (q.afterId !== undefined) where.push(`id > ${p(q.afterId)}`);
    const { rows } = await this.sql.query<ArchiveRow>(
      `SELECT id, at, sender, recipient, content_type, body, size, result, server_id FROM archive
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ${p(q.limit)}`,
      params,
    );
    return rows.map(toRecord);
  }

  /** Deletes messages older than the cutoff; returns how many went. */
  async purgeBefore(cutoff: Date): Promise<number> {
    const { affectedRows } = await this.sql.query('DELETE FROM archive WHERE at < $1', [
      cutoff.toISOString(),
    ]);
    return affectedRows;
  }
}
