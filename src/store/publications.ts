import type { Sql } from './sql.js';

/** A PUBLISHed event state (RFC 3903), one per entity tag. */
export interface Publication {
  aor: string;
  etag: string;
  contentType: string;
  body: string;
  expiresAt: Date;
  serverId: string;
}

interface PublicationRow {
  aor: string;
  etag: string;
  content_type: string;
  body: string;
  expires_at: Date;
  server_id: string;
}

const COLUMNS = 'aor, etag, content_type, body, expires_at, server_id';

function toPublication(r: PublicationRow): Publication {
  return {
    aor: r.aor,
    etag: r.etag,
    contentType: r.content_type,
    body: r.body,
    expiresAt: r.expires_at,
    serverId: r.server_id,
  };
}

export class PublicationRepository {
  constructor(private readonly sql: Sql) {}

  async upsert(p: Publication): Promise<void> {
    await this.sql.query(
      `INSERT INTO presence_publications (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (etag) DO UPDATE SET aor = EXCLUDED.aor, content_type = EXCLUDED.content_type,
         body = EXCLUDED.body, expires_at = EXCLUDED.expires_at, server_id = EXCLUDED.server_id, updated_at = now()`,
      [p.aor, p.etag, p.contentType, p.body, p.expiresAt, p.serverId],
    );
  }

  async get(etag: string, now: Date = new Date()): Promise<Publication | undefined> {
    const res = await this.sql.query<PublicationRow>(
      `SELECT ${COLUMNS} FROM presence_publications WHERE etag = $1 AND expires_at > $2`,
      [etag, now],
    );
    return res.rows[0] ? toPublication(res.rows[0]) : undefined;
  }

  /**
   * RFC 3903 4.4: a refresh or modify carries SIP-If-Match and gets a new entity tag.
   * Moves the state to newEtag, with a new body when modifying; false when the old tag is
   * unknown or expired (the caller answers 412).
   */
  async replace(
    oldEtag: string,
    next: { etag: string; expiresAt: Date; body?: string; contentType?: string },
    now: Date = new Date(),
  ): Promise<boolean> {
    const res = await this.sql.query(
      `UPDATE presence_publications SET etag = $2, expires_at = $3,
         body = coalesce($4, body), content_type = coalesce($5, content_type), updated_at = now()
       WHERE etag = $1 AND expires_at > $6`,
      [oldEtag, next.etag, next.expiresAt, next.body ?? null, next.contentType ?? null, now],
    );
    return res.affectedRows > 0;
  }

  async listForAor(aor: string, now: Date = new Date()): Promise<Publication[]> {
    const res = await this.sql.query<PublicationRow>(
      `SELECT ${COLUMNS} FROM presence_publications WHERE aor = $1 AND expires_at > $2 ORDER BY updated_at, etag`,
      [aor, now],
    );
    return res.rows.map(toPublication);
  }

  async remove(etag: string): Promise<boolean> {
    const res = await this.sql.query('DELETE FROM presence_publications WHERE etag = $1', [etag]);
    return res.affectedRows > 0;
  }

  /** Returns the AORs whose state changed, so presence can notify their watchers. */
  async removeExpired(now: Date = new Date()): Promise<string[]> {
    const res = await this.sql.query<{ aor: string }>(
      'DELETE FROM presence_publications WHERE expires_at <= $1 RETURNING aor',
      [now],
    );
    return [...new Set(res.rows.map((r) => r.aor))].sort();
  }

  async removeForServer(serverId: string): Promise<string[]> {
    const res = await this.sql.query<{ aor: string }>(
      'DELETE FROM presence_publications WHERE server_id = $1 RETURNING aor',
      [serverId],
    );
    return [...new Set(res.rows.map((r) => r.aor))].sort();
  }
}
