import type { Sql } from './sql.js';

/**
 * A subscription's dialog state (RFC 6665 4.1, RFC 3261 12): enough to send a NOTIFY
 * from any front-end of a pool, not only the one that accepted the SUBSCRIBE.
 */
export interface Subscription {
  id: string;
  /** Event package: presence, presence.winfo, or Parley's contact-list package. */
  event: string;
  presentity: string;
  watcher: string;
  callId: string;
  localTag: string;
  remoteTag: string;
  remoteTarget: string;
  routeSet: string[];
  localCseq: number;
  expiresAt: Date;
  /** Subscription-State (RFC 6665 8.2.3): active, pending, terminated. */
  status: string;
  serverId: string;
  flowId: string;
}

interface SubscriptionRow {
  id: string;
  event: string;
  presentity: string;
  watcher: string;
  call_id: string;
  local_tag: string;
  remote_tag: string;
  remote_target: string;
  route_set: string[];
  local_cseq: number;
  expires_at: Date;
  status: string;
  server_id: string;
  flow_id: string;
}

const COLUMNS =
  'id, event, presentity, watcher, call_id, local_tag, remote_tag, remote_target, route_set, local_cseq, expires_at, status, server_id, flow_id';

function toSubscription(r: SubscriptionRow): Subscription {
  return {
    id: r.id,
    event: r.event,
    presentity: r.presentity,
    watcher: r.watcher,
    callId: r.call_id,
    localTag: r.local_tag,
    remoteTag: r.remote_tag,
    remoteTarget: r.remote_target,
    routeSet: r.route_set ?? [],
    localCseq: r.local_cseq,
    expiresAt: r.expires_at,
    status: r.status,
    serverId: r.server_id,
    flowId: r.flow_id,
  };
}

export class SubscriptionRepository {
  constructor(private readonly sql: Sql) {}

  async upsert(s: Subscription): Promise<void> {
    await this.sql.query(
      `INSERT INTO subscriptions (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
       ON CONFLICT (id) DO UPDATE SET event = EXCLUDED.event, presentity = EXCLUDED.presentity,
         watcher = EXCLUDED.watcher, call_id = EXCLUDED.call_id, local_tag = EXCLUDED.local_tag,
         remote_tag = EXCLUDED.remote_tag, remote_target = EXCLUDED.remote_target, route_set = EXCLUDED.route_set,
         local_cseq = EXCLUDED.local_cseq, expires_at = EXCLUDED.expires_at, status = EXCLUDED.status,
         server_id = EXCLUDED.server_id, flow_id = EXCLUDED.flow_id, updated_at = now()`,
      [
        s.id,
        s.event,
        s.presentity,
        s.watcher,
        s.callId,
        s.localTag,
        s.remoteTag,
        s.remoteTarget,
        s.routeSet,
        s.localCseq,
        s.expiresAt,
        s.status,
        s.serverId,
        s.flowId,
      ],
    );
  }

  async get(id: string): Promise<Subscription | undefined> {
    const res = await this.sql.query<SubscriptionRow>(`SELECT ${COLUMNS} FROM subscriptions WHERE id = $1`, [
      id,
    ]);
    return res.rows[0] ? toSubscription(res.rows[0]) : undefined;
  }

  /** Refresh (RFC 6665 4.1.2.1): new expiry and, when given, new status. */
  async refresh(id: string, expiresAt: Date, status?: string): Promise<boolean> {
    const res = await this.sql.query(
      'UPDATE subscriptions SET expires_at = $2, status = coalesce($3, status), updated_at = now() WHERE id = $1',
      [id, expiresAt, status ?? null],
    );
    return res.affectedRows > 0;
  }

  /**
   * Takes the next local CSeq for a NOTIFY atomically, so two front-ends notifying the
   * same dialog never reuse a number (RFC 3261 12.2.1.1: CSeq strictly increases).
   */
  async nextLocalCseq(id: string): Promise<number | undefined> {
    const res = await this.sql.query<{ local_cseq: number }>(
      'UPDATE subscriptions SET local_cseq = local_cseq + 1, updated_at = now() WHERE id = $1 RETURNING local_cseq',
      [id],
    );
    return res.rows[0]?.local_cseq;
  }

  /** Moves the subscription to another flow (the watcher reconnected elsewhere). */
  async moveFlow(id: string, serverId: string, flowId: string): Promise<boolean> {
    const res = await this.sql.query(
      'UPDATE subscriptions SET server_id = $2, flow_id = $3, updated_at = now() WHERE id = $1',
      [id, serverId, flowId],
    );
    return res.affectedRows > 0;
  }

  async remove(id: string): Promise<boolean> {
    const res = await this.sql.query('DELETE FROM subscriptions WHERE id = $1', [id]);
    return res.affectedRows > 0;
  }

  /** Unexpired watchers of a presentity for one event package: who gets a NOTIFY. */
  async listForPresentity(
    presentity: string,
    event: string,
    now: Date = new Date(),
  ): Promise<Subscription[]> {
    const res = await this.sql.query<SubscriptionRow>(
      `SELECT ${COLUMNS} FROM subscriptions
       WHERE presentity = $1 AND event = $2 AND expires_at > $3 ORDER BY watcher, id`,
      [presentity, event, now],
    );
    return res.rows.map(toSubscription);
  }

  async listForWatcher(watcher: string, now: Date = new Date()): Promise<Subscription[]> {
    const res = await this.sql.query<SubscriptionRow>(
      `SELECT ${COLUMNS} FROM subscriptions WHERE watcher = $1 AND expires_at > $2 ORDER BY presentity, id`,
      [watcher, now],
    );
    return res.rows.map(toSubscription);
  }

  async listForServer(serverId: string, now: Date = new Date()): Promise<Subscription[]> {
    const res = await this.sql.query<SubscriptionRow>(
      `SELECT ${COLUMNS} FROM subscriptions WHERE server_id = $1 AND expires_at > $2 ORDER BY id`,
      [serverId, now],
    );
    return res.rows.map(toSubscription);
  }

  /** Returns the removed subscriptions: RFC 6665 4.2.2 wants a final NOTIFY for each. */
  async removeExpired(now: Date = new Date()): Promise<Subscription[]> {
    const res = await this.sql.query<SubscriptionRow>(
      `DELETE FROM subscriptions WHERE expires_at <= $1 RETURNING ${COLUMNS}`,
      [now],
    );
    return res.rows.map(toSubscription);
  }

  async removeForServer(serverId: string): Promise<number> {
    const res = await this.sql.query('DELETE FROM subscriptions WHERE server_id = $1', [serverId]);
    return res.affectedRows;
  }

  async countActive(now: Date = new Date()): Promise<number> {
    const res = await this.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM subscriptions WHERE expires_at > $1',
      [now],
    );
    return res.rows[0].n;
  }
}
