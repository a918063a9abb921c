import type { Database } from '../store/sql.js';

/** One endpoint's published presence (RFC 3903 event state), identified by its entity tag. */
export interface PublishedState {
  aor: string;
  etag: string;
  body: string;
  updatedAt: number;
  expiresAt: number;
}

/**
 * Where published presence lives. A standard server keeps it in memory; pool members share
 * it in PostgreSQL so a watcher on one front-end sees what an endpoint published on another.
 * Every change is announced to `onChange` listeners on every server of the store.
 */
export interface PublicationStore {
  get(aor: string, etag: string): Promise<PublishedState | undefined>;
  save(state: PublishedState): Promise<void>;
  /** Removes one state; with `onlyIfExpired`, only when it was not refreshed meanwhile. */
  remove(aor: string, etag: string, onlyIfExpired?: boolean): Promise<boolean>;
  removeAll(aor: string): Promise<number>;
  list(aor: string): Promise<PublishedState[]>;
  onChange(listener: (aor: string) => void): Promise<() => Promise<void>>;
}

export class MemoryPublicationStore implements PublicationStore {
  private readonly byAor = new Map<string, Map<string, PublishedState>>();
  private readonly listeners = new Set<(aor: string) => void>();

  async get(aor: string, etag: string): Promise<PublishedState | undefined> {
    const state = this.byAor.get(aor)?.get(etag);
    return state && state.expiresAt > Date.now() ? state : undefined;
  }

  async save(state: PublishedState): Promise<void> {
    let map = this.byAor.get(state.aor);
    if (!map) {
      map = new Map();
      this.byAor.set(state.aor, map);
    }
    map.set(state.etag, { ...state });
    this.changed(state.aor);
  }

  async remove(aor: string, etag: string, onlyIfExpired = false): Promise<boolean> {
    const map = this.byAor.get(aor);
    const state = map?.get(etag);
    if (!map || !state || (onlyIfExpired && state.expiresAt > Date.now())) return false;
    map.delete(etag);
    if (map.size === 0) this.byAor.delete(aor);
    this.changed(aor);
    return true;
  }

  async removeAll(aor: string): Promise<number> {
    const n = this.byAor.get(aor)?.size ?? 0;
    if (n === 0) return 0;
    this.byAor.delete(aor);
    this.changed(aor);
    return n;
  }

  async list(aor: string): Promise<PublishedState[]> {
    const now = Date.now();
    return [...(this.byAor.get(aor)?.values() ?? [])].filter((s) => s.expiresAt > now);
  }

  async onChange(listener: (aor: string) => void): Promise<() => Promise<void>> {
    this.listeners.add(listener);
    return async () => {
      this.listeners.delete(listener);
    };
  }

  private changed(aor: string): void {
    for (const l of this.listeners) queueMicrotask(() => l(aor));
  }
}

/** Change feed channel of shared presence state; the payload is the AOR. */
export const PRESENCE_CHANNEL = 'parley_presence';

interface Row {
  aor: string;
  etag: string;
  body: string;
  updated_at: Date;
  expires_at: Date;
}

/** Presence state in the shared store (presence_publications), announced with NOTIFY. */
export class SqlPublicationStore implements PublicationStore {
  constructor(
    private readonly db: Database,
    private readonly serverId: string,
    private readonly contentType = 'application/pidf+xml',
  ) {}

  async get(aor: string, etag: string): Promise<PublishedState | undefined> {
    const { rows } = await this.db.query<Row>(
      'SELECT aor, etag, body, updated_at, expires_at FROM presence_publications WHERE aor = $1 AND etag = $2 AND expires_at > now()',
      [aor, etag],
    );
    return rows[0] ? toState(rows[0]) : undefined;
  }

  async save(state: PublishedState): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO presence_publications (aor, etag, content_type, body, expires_at, server_id, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (etag) DO UPDATE SET body = EXCLUDED.body, expires_at = EXCLUDED.expires_at,
           server_id = EXCLUDED.server_id, updated_at = EXCLUDED.updated_at`,
        [
          state.aor,
          state.etag,
          this.contentType,
          state.body,
          new Date(state.expiresAt),
          this.serverId,
          new Date(state.updatedAt),
        ],
      );
      await tx.query('SELECT pg_notify($1, $2)', [PRESENCE_CHANNEL, state.aor]);
    });
  }

  async remove(aor: string, etag: string, onlyIfExpired = false): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const res = await tx.query(
        `DELETE FROM presence_publications WHERE aor = $1 AND etag = $2${onlyIfExpired ? ' AND expires_at <= now()' : ''}`,
        [aor, etag],
      );
      if (res.affectedRows > 0) await tx.query('SELECT pg_notify($1, $2)', [PRESENCE_CHANNEL, aor]);
      return res.affectedRows > 0;
    });
  }

  async removeAll(aor: string): Promise<number> {
    return this.db.transaction(async (tx) => {
      const res = await tx.query('DELETE FROM presence_publications WHERE aor = $1', [aor]);
      if (res.affectedRows > 0) await tx.query('SELECT pg_notify($1, $2)', [PRESENCE_CHANNEL, aor]);
      return res.affectedRows;
    });
  }

  async list(aor: string): Promise<PublishedState[]> {
    const { rows } = await this.db.query<Row>(
      'SELECT aor, etag, body, updated_at, expires_at FROM presence_publications WHERE aor = $1 AND expires_at > now() ORDER BY updated_at, etag',
      [aor],
    );
    return rows.map(toState);
  }

  onChange(listener: (aor: string) => void): Promise<() => Promise<void>> {
    return this.db.listen(PRESENCE_CHANNEL, listener);
  }

  /** Drops what a dead server's endpoints published; their watchers learn it at once. */
  async removeForServer(serverId: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ aor: string }>(
        'DELETE FROM presence_publications WHERE server_id = $1 RETURNING aor',
        [serverId],
      );
      for (const aor of new Set(rows.map((r) => r.aor)))
        await tx.query('SELECT pg_notify($1, $2)', [PRESENCE_CHANNEL, aor]);
    });
  }
}

function toState(r: Row): PublishedState {
  return {
    aor: r.aor,
    etag: r.etag,
    body: r.body,
    updatedAt: new Date(r.updated_at).getTime(),
    expiresAt: new Date(r.expires_at).getTime(),
  };
}
