import type { Sql } from './sql.js';

/** Change feed channel of shared presence state; the payload is the AOR whose state changed. */
export const PRESENCE_CHANNEL = 'parley_presence';

/** A PUBLISHed event state (RFC 3903), one per entity tag. */
export interface Publication {
  aor: string;
  etag: string;
  contentType: string;
  body: string;
  /** When the body last changed: composition ranks publications by it (src/presence/compose.ts). */
  updatedAt: Date;
  expiresAt: Date;
  /** The front-end the publishing endpoint is connected to. */
  serverId: string;
}

interface PublicationRow {
  aor: string;
  etag: string;
  content_type: string;
  body: string;
  updated_at: Date;
  expires_at: Date;
  server_id: string;
}

const COLUMNS = 'aor, etag, content_type, body, updated_at, expires_at, server_id';

function toPublication(r: PublicationRow): Publication {
  return {
    aor: r.aor,
    etag: r.etag,
    contentType: r.content_type,
    body: r.body,
    updatedAt: new Date(r.updated_at),
    expiresAt: new Date(r.expires_at),
    serverId: r.server_id,
  };
}

/**
 * Published presence shared by the front-ends of a pool (presence_publications), so a
 * watcher on one front-end sees what an endpoint published on another. Every change is
 * announced on PRESENCE_CHANNEL in the same transaction, so listeners hear of it once it
 * is committed. Expiry is judged by the database clock, the one clock all front-ends share.
 */
export class PublicationRepository {
  constructor(private readonly sql: Sql) {}

  /** The unexpired state of one entity tag of the AOR. */
  async get(aor: string, etag: string): Promise<Publication | undefined> {
    const { rows } = await this.sql.query<PublicationRow>(
      `SELECT ${COLUMNS} FROM presence_publications WHERE aor = $1 AND etag = $2 AND expires_at > now()`,
      [aor, etag],
    );
    return rows[0] ? toPublication(rows[0]) : undefined;
  }

  /**
   * Creates or refreshes a state (RFC 3903 4.1, 4.2). The write and its announcement are one
   * statement (a data-modifying WITH): one round trip on the PUBLISH path instead of four
   * (BEGIN, INSERT, pg_notify, COMMIT), still announced only once committed.
   */
  async save(p: Publication): Promise<void> {
    await this.sql.query(
      `WITH saved AS (
         INSERT INTO presence_publications (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (etag) DO UPDATE SET body = EXCLUDED.body, expires_at = EXCLUDED.expires_at,
           server_id = EXCLUDED.server_id, updated_at = EXCLUDED.updated_at
         RETURNING aor)
       SELECT pg_notify($8, aor) FROM saved`,
      [p.aor, p.etag, p.contentType, p.body, p.updatedAt, p.expiresAt, p.serverId, PRESENCE_CHANNEL],
    );
  }

  /**
   * Removes one state (RFC 3903 4.3, or its expiry); with `onlyIfExpired`, only when it was
   * not refreshed meanwhile, perhaps through another front-end.
   */
  async remove(aor: string, etag: string, onlyIfExpired = false): Promise<boolean> {
    return (
      (await this.deleteAnnounced(
        `aor = $2 AND etag = $3${onlyIfExpired ? ' AND expires_at <= now()' : ''}`,
        [aor, etag],
      )) > 0
    );
  }

  /** Every state of the AOR (the user signed out everywhere); returns how many went. */
  removeAll(aor: string): Promise<number> {
    return this.removeAllOf([aor]);
  }

  /** Every state of each of these AORs, in one statement (users signed out at once). */
  removeAllOf(aors: readonly string[]): Promise<number> {
    if (aors.length === 0) return Promise.resolve(0);
    return this.deleteAnnounced('aor = ANY($2::text[])', [aors]);
  }

  /**
   * Deletes the states matching `where` ($2.. are `params`) and announces each AOR in the same
   * statement (PostgreSQL delivers one notification per distinct payload of a transaction).
   * Returns how many states went.
   */
  private async deleteAnnounced(where: string, params: unknown[]): Promise<number> {
    const { rows } = await this.sql.query(
      `WITH gone AS (DELETE FROM presence_publications WHERE ${where} RETURNING aor)
       SELECT pg_notify($1, aor) FROM gone`,
      [PRESENCE_CHANNEL, ...params],
    );
    return rows.length;
  }

  /** The AORs with any state, expired or not (what a sign-out may have to remove). */
  async publishedAors(): Promise<string[]> {
    const { rows } = await this.sql.query<{ aor: string }>('SELECT DISTINCT aor FROM presence_publications');
    return rows.map((r) => r.aor);
  }

  /** The AOR's unexpired states, oldest change first. */
  async listForAor(aor: string): Promise<Publication[]> {
    const { rows } = await this.sql.query<PublicationRow>(
      `SELECT ${COLUMNS} FROM presence_publications WHERE aor = $1 AND expires_at > now() ORDER BY updated_at, etag`,
      [aor],
    );
    return rows.map(toPublication);
  }

  /**
   * Drops what a server's endpoints published (the server died, or is leaving: a drain);
   * their watchers learn it at once.
   * Returns the AORs whose state changed.
   */
  async removeForServer(serverId: string): Promise<string[]> {
    return this.sql.transaction(async (tx) => {
      const { rows } = await tx.query<{ aor: string }>(
        'DELETE FROM presence_publications WHERE server_id = $1 RETURNING aor',
        [serverId],
      );
      const aors = [...new Set(rows.map((r) => r.aor))].sort();
      // One statement for every announcement: a front-end leaving with thousands of users.
      if (aors.length > 0)
        await tx.query('SELECT pg_notify($1, aor) FROM unnest($2::text[]) AS aor', [PRESENCE_CHANNEL, aors]);
      return aors;
    });
  }
}
