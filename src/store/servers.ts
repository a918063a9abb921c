import type { Sql } from './sql.js';

export type ServerState = 'up' | 'down' | 'draining';

/** A running Parley server, as the pool sees it (roles, health, liveness). */
export interface ServerRecord {
  id: string;
  role: string;
  home: string | null;
  /** SIP address other servers reach it at (host:port). */
  address: string;
  healthUrl: string | null;
  state: ServerState;
  startedAt: Date;
  heartbeatAt: Date;
}

interface ServerRow {
  id: string;
  role: string;
  home: string | null;
  address: string;
  health_url: string | null;
  state: ServerState;
  started_at: Date;
  heartbeat_at: Date;
}

const COLUMNS = 'id, role, home, address, health_url, state, started_at, heartbeat_at';

function toServer(r: ServerRow): ServerRecord {
  return {
    id: r.id,
    role: r.role,
    home: r.home,
    address: r.address,
    healthUrl: r.health_url,
    state: r.state,
    startedAt: r.started_at,
    heartbeatAt: r.heartbeat_at,
  };
}

export class ServerRepository {
  constructor(private readonly sql: Sql) {}

  /** Called at start: (re)registers the server as up with a fresh start time. */
  async register(s: {
    id: string;
    role: string;
    home?: string | null;
    address: string;
    healthUrl?: string | null;
  }) {
    const res = await this.sql.query<ServerRow>(
      `INSERT INTO servers (id, role, home, address, health_url, state, started_at, heartbeat_at)
       VALUES ($1, $2, $3, $4, $5, 'up', now(), now())
       ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, home = EXCLUDED.home, address = EXCLUDED.address,
         health_url = EXCLUDED.health_url, state = 'up', started_at = now(), heartbeat_at = now()
       RETURNING ${COLUMNS}`,
      [s.id, s.role, s.home ?? null, s.address, s.healthUrl ?? null],
    );
    return toServer(res.rows[0]);
  }

  /** False when the server is unknown or was marked down: it must register again. */
  async heartbeat(id: string): Promise<boolean> {
    const res = await this.sql.query(
      "UPDATE servers SET heartbeat_at = now() WHERE id = $1 AND state <> 'down'",
      [id],
    );
    return res.affectedRows > 0;
  }

  /**
   * The database's clock, which stamps every heartbeat: ages computed against it hold
   * whatever the clock of the host asking says.
   */
  async clock(): Promise<Date> {
    const res = await this.sql.query<{ now: Date }>('SELECT now() AS now');
    return new Date(res.rows[0].now);
  }

  async get(id: string): Promise<ServerRecord | undefined> {
    const res = await this.sql.query<ServerRow>(`SELECT ${COLUMNS} FROM servers WHERE id = $1`, [id]);
    return res.rows[0] ? toServer(res.rows[0]) : undefined;
  }

  async list(filter: { role?: string; home?: string; state?: ServerState } = {}): Promise<ServerRecord[]> {
    const res = await this.sql.query<ServerRow>(
      `SELECT ${COLUMNS} FROM servers
       WHERE ($1::text IS NULL OR role = $1) AND ($2::text IS NULL OR home = $2) AND ($3::text IS NULL OR state = $3)
       ORDER BY id`,
      [filter.role ?? null, filter.home ?? null, filter.state ?? null],
    );
    return res.rows.map(toServer);
  }

  async setState(id: string, state: ServerState): Promise<boolean> {
    const res = await this.sql.query('UPDATE servers SET state = $2 WHERE id = $1', [id, state]);
    return res.affectedRows > 0;
  }

  markDown(id: string): Promise<boolean> {
    return this.setState(id, 'down');
  }

  /**
   * Marks down every server whose last heartbeat is older than `before`, returning their
   * ids so a surviving front-end can clean up their registrations and subscriptions.
   */
  async markStaleDown(before: Date): Promise<string[]> {
    const res = await this.sql.query<{ id: string }>(
      "UPDATE servers SET state = 'down' WHERE state <> 'down' AND heartbeat_at < $1 RETURNING id",
      [before],
    );
    return res.rows.map((r) => r.id).sort();
  }

  async remove(id: string): Promise<boolean> {
    const res = await this.sql.query('DELETE FROM servers WHERE id = $1', [id]);
    return res.affectedRows > 0;
  }
}
