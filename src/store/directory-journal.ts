import { copyTextField, jsonColumn, type Sql } from './sql.js';

/**
 * The directory sync's tables (002_directory.sql): run journal, planned operations,
 * watermarks, joins (source anchor -> central contact) and the one-run-at-a-time lock.
 * `parley directory sync` (src/directory/sync.ts) is their only user.
 */

export type RunStatus = 'running' | 'succeeded' | 'partial' | 'refused' | 'failed' | 'interrupted';
export type OpAction = 'add' | 'update' | 'disable' | 'delete';
export type JoinState = 'active' | 'disabled' | 'conflict';

export interface Join {
  forest: string;
  anchor: string;
  sourceDn: string;
  contactDn: string;
  sipAddress: string;
  state: JoinState;
  /** The contact's attributes as last written (or wanted, while in conflict). */
  attributes: Record<string, string[]>;
  attributesHash: string;
  disabledAt?: Date;
  disabledReason?: 'source-disabled' | 'source-gone';
}

export interface JournalOp {
  seq: number;
  forest: string;
  anchor: string;
  action: OpAction;
  contactDn: string;
}

export interface LockHolder {
  holder: string;
  runId?: number;
  acquiredAt: Date;
  heartbeatAt: Date;
}

/**
 * A run's ops by status as a jsonb object (`r` is the run's row): the rows still there
 * (pending, failed) and the done ones, which markOps counts on the run's row
 * (`summary.opsDone`) instead of keeping.
 */
const OP_COUNTS_SQL = `(SELECT coalesce(jsonb_object_agg(c.status, c.n), '{}'::jsonb)
    FROM (SELECT status, count(*) AS n FROM directory_sync_ops o WHERE o.run_id = r.id GROUP BY status
          UNION ALL
          SELECT 'done', (r.summary->>'opsDone')::bigint WHERE r.summary ? 'opsDone') c)`;

const OP_COLUMNS = ['run_id', 'seq', 'forest', 'anchor', 'action', 'contact_dn'] as const;
const JOIN_COLUMNS = [
  'forest',
  'anchor',
  'source_dn',
  'contact_dn',
  'sip_address',
  'state',
  'attributes',
  'attributes_hash',
  'disabled_at',
  'disabled_reason',
] as const;

/** A nullable field of COPY's text format. */
function copyField(value: string | undefined): string {
  return value === undefined ? '\\N' : copyTextField(value);
}

/** Finished sync runs are kept this many days (docs/directory.md, Store tables)... */
export const SYNC_RUNS_KEPT_DAYS = 90;
/** ...and the newest this many whatever their age. */
export const SYNC_RUNS_KEPT = 100;

/** The name of the sync's lock row. */
export const SYNC_LOCK = 'directory-sync';

interface JoinRow {
  forest: string;
  anchor: string;
  source_dn: string;
  contact_dn: string;
  sip_address: string;
  state: JoinState;
  attributes: Record<string, string[]> | string;
  attributes_hash: string;
  disabled_at: Date | string | null;
  disabled_reason: 'source-disabled' | 'source-gone' | null;
}

function toJoin(r: JoinRow): Join {
  return {
    forest: r.forest,
    anchor: r.anchor,
    sourceDn: r.source_dn,
    contactDn: r.contact_dn,
    sipAddress: r.sip_address,
    state: r.state,
    attributes: jsonColumn(r.attributes),
    attributesHash: r.attributes_hash,
    disabledAt: r.disabled_at ? new Date(r.disabled_at) : undefined,
    disabledReason: r.disabled_reason ?? undefined,
  };
}

export class DirectoryJournalRepository {
  constructor(private readonly sql: Sql) {}

  /**
   * Takes the sync lock for holder. A lock whose heartbeat is older than staleSeconds, or
   * whose holder `holderIsDead` says is gone, is taken over; otherwise its holder is returned.
   */
  async acquireLock(
    holder: string,
    staleSeconds: number,
    holderIsDead: (holder: string) => boolean = () => false,
  ): Promise<{ acquired: true } | { acquired: false; heldBy: LockHolder }> {
    return this.sql.transaction(async (tx) => {
      const inserted = await tx.query(
        `INSERT INTO directory_sync_lock (name, holder) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
        [SYNC_LOCK, holder],
      );
      if (inserted.affectedRows === 1) return { acquired: true as const };
      const { rows } = await tx.query<{
        holder: string;
        run_id: string | null;
        acquired_at: Date;
        heartbeat_at: Date;
        stale: boolean;
      }>(
        `SELECT holder, run_id, acquired_at, heartbeat_at,
                heartbeat_at < now() - make_interval(secs => $2) AS stale
           FROM directory_sync_lock WHERE name = $1 FOR UPDATE`,
        [SYNC_LOCK, staleSeconds],
      );
      const row = rows[0];
      if (row && (row.stale || holderIsDead(row.holder))) {
        await tx.query(
          `UPDATE directory_sync_lock SET holder = $2, run_id = NULL, acquired_at = now(), heartbeat_at = now() WHERE name = $1`,
          [SYNC_LOCK, holder],
        );
        return { acquired: true as const };
      }
      if (!row) {
        await tx.query(`INSERT INTO directory_sync_lock (name, holder) VALUES ($1, $2)`, [SYNC_LOCK, holder]);
        return { acquired: true as const };
      }
      return {
        acquired: false as const,
        heldBy: {
          holder: row.holder,
          runId: row.run_id === null ? undefined : Number(row.run_id),
          acquiredAt: new Date(row.acquired_at),
          heartbeatAt: new Date(row.heartbeat_at),
        },
      };
    });
  }

  async heartbeat(holder: string, runId?: number): Promise<void> {
    await this.sql.query(
      `UPDATE directory_sync_lock SET heartbeat_at = now(), run_id = coalesce($3, run_id) WHERE name = $1 AND holder = $2`,
      [SYNC_LOCK, holder, runId ?? null],
    );
  }

  async releaseLock(holder: string): Promise<void> {
    await this.sql.query(`DELETE FROM directory_sync_lock WHERE name = $1 AND holder = $2`, [
      SYNC_LOCK,
      holder,
    ]);
  }

  /**
   * Opens a run. Runs still 'running' are leftovers of a killed process (the caller holds the
   * lock now), so they become 'interrupted' and the new run records the latest as resumed.
   */
  async startRun(opts: {
    mode: 'incremental' | 'full';
    dryRun: boolean;
    holder: string;
  }): Promise<{ runId: number; resumedFrom?: number; pendingOps: number }> {
    return this.sql.transaction(async (tx) => {
      // The interrupted runs' op counts go into their summaries; their ops are not needed
      // any more (the new run reads the same changes again), so they are pruned.
      const stale = await tx.query<{ id: string; pending: string }>(
        `UPDATE directory_sync_runs r SET status = 'interrupted', finished_at = now(),
                summary = coalesce(summary, '{}'::jsonb) || jsonb_build_object('ops', ${OP_COUNTS_SQL})
          WHERE status = 'running'
          RETURNING id, coalesce((summary->'ops'->>'pending')::int, 0) AS pending`,
      );
      await tx.query(`DELETE FROM directory_sync_ops WHERE run_id = ANY($1::bigint[])`, [
        stale.rows.map((r) => r.id),
      ]);
      const last = stale.rows
        .map((r) => ({ id: Number(r.id), pending: Number(r.pending) }))
        .sort((a, b) => b.id - a.id)[0];
      const { rows } = await tx.query<{ id: string }>(
        `INSERT INTO directory_sync_runs (status, mode, dry_run, holder, resumed_from)
         VALUES ('running', $1, $2, $3, $4) RETURNING id`,
        [opts.mode, opts.dryRun, opts.holder, last?.id ?? null],
      );
      return { runId: Number(rows[0].id), resumedFrom: last?.id, pendingOps: last?.pending ?? 0 };
    });
  }

  /**
   * Closes the run with its summary. Its ops are only needed while it runs (to resume, a next
   * run reads the changes again): their counts go into the summary (`ops`) and they are pruned.
   * Runs older than SYNC_RUNS_KEPT_DAYS go too, but never the newest SYNC_RUNS_KEPT: a sync
   * scheduled every few minutes would otherwise add a row per run forever.
   */
  async finishRun(runId: number, status: RunStatus, summary: unknown): Promise<void> {
    await this.sql.transaction(async (tx) => {
      await tx.query(
        `UPDATE directory_sync_runs r SET status = $2, finished_at = now(),
                summary = $3::jsonb || jsonb_build_object('ops', ${OP_COUNTS_SQL})
          WHERE id = $1`,
        [runId, status, JSON.stringify(summary)],
      );
      await tx.query(`DELETE FROM directory_sync_ops WHERE run_id = $1`, [runId]);
      const old = `SELECT id FROM directory_sync_runs
          WHERE status <> 'running' AND started_at < now() - make_interval(days => $1)
            AND id < (SELECT min(id) FROM (SELECT id FROM directory_sync_runs ORDER BY id DESC LIMIT $2) newest)`;
      const keep = [SYNC_RUNS_KEPT_DAYS, SYNC_RUNS_KEPT];
      // A kept run resumed from a pruned one no longer names it (its summary still does).
      await tx.query(
        `UPDATE directory_sync_runs SET resumed_from = NULL
          WHERE resumed_from IN (${old}) AND id NOT IN (${old})`,
        keep,
      );
      await tx.query(`DELETE FROM directory_sync_runs WHERE id IN (${old})`, keep);
    });
  }

  async runStatus(runId: number): Promise<RunStatus | undefined> {
    const { rows } = await this.sql.query<{ status: RunStatus }>(
      `SELECT status FROM directory_sync_runs WHERE id = $1`,
      [runId],
    );
    return rows[0]?.status;
  }

  /** The latest run (highest id), for tools and tests that look at what the last sync did. */
  async lastRun(): Promise<{ id: number; status: RunStatus } | undefined> {
    const { rows } = await this.sql.query<{ id: string; status: RunStatus }>(
      `SELECT id, status FROM directory_sync_runs ORDER BY id DESC LIMIT 1`,
    );
    return rows[0] ? { id: Number(rows[0].id), status: rows[0].status } : undefined;
  }

  /** The highest op sequence number recorded for the run (0 when none). */
  async lastOpSeq(runId: number): Promise<number> {
    const { rows } = await this.sql.query<{ n: string }>(
      'SELECT coalesce(max(seq), 0) AS n FROM directory_sync_ops WHERE run_id = $1',
      [runId],
    );
    return Number(rows[0].n);
  }

  /**
   * Journals ops before they are sent: copied where the engine has COPY (the embedded store,
   * a direct PostgreSQL connection), less than half the cost of the INSERT.
   */
  async recordOps(runId: number, ops: JournalOp[]): Promise<void> {
    if (ops.length === 0) return;
    await this.sql.transaction(async (tx) => {
      if (tx.copyFrom) {
        let data = '';
        for (const o of ops)
          data += `${runId}\t${o.seq}\t${copyTextField(o.forest)}\t${copyTextField(o.anchor)}\t${o.action}\t${copyTextField(o.contactDn)}\n`;
        await tx.copyFrom('directory_sync_ops', OP_COLUMNS, data);
        return;
      }
      await tx.query(
        `INSERT INTO directory_sync_ops (run_id, seq, forest, anchor, action, contact_dn)
         SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[])`,
        [
          runId,
          ops.map((o) => o.seq),
          ops.map((o) => o.forest),
          ops.map((o) => o.anchor),
          ops.map((o) => o.action),
          ops.map((o) => o.contactDn),
        ],
      );
    });
  }

  /**
   * Marks ops done or failed. A failed op stays, with its error; done ops are removed and
   * counted on the run's row (`summary.opsDone`, in opCounts as `done`): a delete costs
   * the store half what an update of every op did.
   */
  async markOps(runId: number, seqs: number[], status: 'done' | 'failed', error?: string): Promise<void> {
    if (seqs.length === 0) return;
    if (status === 'failed') {
      await this.sql.query(
        `UPDATE directory_sync_ops SET status = 'failed', error = $3 WHERE run_id = $1 AND seq = ANY($2::int[])`,
        [runId, seqs, error ?? null],
      );
      return;
    }
    await this.sql.query(
      `WITH done AS (DELETE FROM directory_sync_ops WHERE run_id = $1 AND seq = ANY($2::int[]) RETURNING 1)
       UPDATE directory_sync_runs SET summary = coalesce(summary, '{}'::jsonb)
              || jsonb_build_object('opsDone', coalesce((summary->>'opsDone')::bigint, 0) + (SELECT count(*) FROM done))
        WHERE id = $1`,
      [runId, seqs],
    );
  }

  /** The run's ops by status: counted while it runs, as its summary recorded them once it ended. */
  async opCounts(runId: number): Promise<Record<string, number>> {
    const { rows } = await this.sql.query<{ ops: Record<string, number> | string | null }>(
      `SELECT CASE WHEN r.status = 'running' THEN ${OP_COUNTS_SQL} ELSE r.summary->'ops' END AS ops
         FROM directory_sync_runs r WHERE r.id = $1`,
      [runId],
    );
    const ops = rows[0]?.ops;
    return ops == null ? {} : jsonColumn(ops);
  }

  async watermark(forest: string): Promise<string | undefined> {
    const { rows } = await this.sql.query<{ watermark: string }>(
      `SELECT watermark FROM directory_watermarks WHERE forest = $1`,
      [forest],
    );
    return rows[0]?.watermark;
  }

  async setWatermark(forest: string, watermark: string): Promise<void> {
    await this.sql.query(
      `INSERT INTO directory_watermarks (forest, watermark) VALUES ($1, $2)
       ON CONFLICT (forest) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = now()`,
      [forest, watermark],
    );
  }

  /** The forest's content-sync cookie (RFC 4533), as the server gave it. */
  async syncCookie(forest: string): Promise<Buffer | undefined> {
    const { rows } = await this.sql.query<{ cookie: string }>(
      `SELECT cookie FROM directory_sync_cookies WHERE forest = $1`,
      [forest],
    );
    return rows[0] ? Buffer.from(rows[0].cookie, 'base64') : undefined;
  }

  async setSyncCookie(forest: string, cookie: Buffer): Promise<void> {
    await this.sql.query(
      `INSERT INTO directory_sync_cookies (forest, cookie) VALUES ($1, $2)
       ON CONFLICT (forest) DO UPDATE SET cookie = EXCLUDED.cookie, updated_at = now()`,
      [forest, cookie.toString('base64')],
    );
  }

  /** The joins of these anchors, in one statement. */
  async joinsFor(forest: string, anchors: string[]): Promise<Map<string, Join>> {
    if (anchors.length === 0) return new Map();
    const { rows } = await this.sql.query<JoinRow>(
      `SELECT * FROM directory_joins WHERE forest = $1 AND anchor = ANY($2::text[])`,
      [forest, anchors],
    );
    return new Map(rows.map((r) => [r.anchor, toJoin(r)]));
  }

  /**
   * Joins waiting on something whatever the source says: conflicts (retried every run) and
   * contacts disabled at or before `disabledBefore` (their grace period is over).
   */
  async waitingJoins(forest: string, disabledBefore: Date): Promise<Join[]> {
    const { rows } = await this.sql.query<JoinRow>(
      `SELECT * FROM directory_joins
        WHERE forest = $1 AND state <> 'active'
          AND (state = 'conflict' OR (state = 'disabled' AND disabled_at <= $2))
        ORDER BY anchor`,
      [forest, disabledBefore.toISOString()],
    );
    return rows.map(toJoin);
  }

  /**
   * Every anchor the forest has a join for, `pageSize` at a time in anchor order (to find the
   * gone ones after a whole-forest read or a present phase, without holding them all).
   */
  async *joinAnchors(forest: string, pageSize = 10_000): AsyncGenerator<string[]> {
    let after = '';
    for (;;) {
      const { rows } = await this.sql.query<{ anchor: string }>(
        `SELECT anchor FROM directory_joins WHERE forest = $1 AND anchor > $2 ORDER BY anchor LIMIT $3`,
        [forest, after, pageSize],
      );
      if (rows.length > 0) yield rows.map((r) => r.anchor);
      if (rows.length < pageSize) return;
      after = rows[rows.length - 1].anchor;
    }
  }

  /** How many joins the forest has that are not conflicts: its contacts. */
  async contactCount(forest: string): Promise<number> {
    const { rows } = await this.sql.query<{ n: string }>(
      `SELECT count(*) AS n FROM directory_joins WHERE forest = $1 AND state <> 'conflict'`,
      [forest],
    );
    return Number(rows[0].n);
  }

  async joins(forest: string): Promise<Map<string, Join>> {
    const { rows } = await this.sql.query<JoinRow>(`SELECT * FROM directory_joins WHERE forest = $1`, [
      forest,
    ]);
    return new Map(rows.map((r) => [r.anchor, toJoin(r)]));
  }

  /** The joins that hold this SIP address (normally one; conflict rows included). */
  async joinsForAddress(sipAddress: string): Promise<Join[]> {
    const { rows } = await this.sql.query<JoinRow>(
      `SELECT * FROM directory_joins WHERE sip_address = $1 ORDER BY forest, anchor`,
      [sipAddress],
    );
    return rows.map(toJoin);
  }

  /** Who holds each SIP address (conflict rows hold nothing). */
  async claims(): Promise<Map<string, { forest: string; anchor: string; sourceDn: string }>> {
    const { rows } = await this.sql.query<{
      sip_address: string;
      forest: string;
      anchor: string;
      source_dn: string;
    }>(`SELECT sip_address, forest, anchor, source_dn FROM directory_joins WHERE state <> 'conflict'`);
    return new Map(
      rows.map((r) => [r.sip_address, { forest: r.forest, anchor: r.anchor, sourceDn: r.source_dn }]),
    );
  }

  /**
   * The holders of these addresses only (an incremental run's lookups): one index probe per
   * address, whatever the planner knows of the table. With `sip_address = ANY(...)` and no
   * statistics (the embedded store has no autovacuum, so a table the sync filled is never
   * analyzed) 2,000 addresses were estimated as more rows than the table has, and read as a
   * sequential scan of every join: 2.4 s at 1,000,000 joins. `OFFSET 0` keeps the planner
   * from flattening the lateral subquery into a merge join over the whole index.
   */
  async claimsFor(
    addresses: string[],
  ): Promise<Map<string, { forest: string; anchor: string; sourceDn: string }>> {
    if (addresses.length === 0) return new Map();
    const { rows } = await this.sql.query<{
      sip_address: string;
      forest: string;
      anchor: string;
      source_dn: string;
    }>(
      `SELECT j.sip_address, j.forest, j.anchor, j.source_dn
         FROM unnest($1::text[]) AS a(sip)
         CROSS JOIN LATERAL (
           SELECT sip_address, forest, anchor, source_dn FROM directory_joins
            WHERE sip_address = a.sip AND state <> 'conflict' OFFSET 0) j`,
      [addresses],
    );
    return new Map(
      rows.map((r) => [r.sip_address, { forest: r.forest, anchor: r.anchor, sourceDn: r.source_dn }]),
    );
  }

  /**
   * Inserts joins of anchors that have none (a new contact's): copied where the engine has
   * COPY, half the cost of saveJoins' upsert. A join already there fails the statement
   * (unique violation, SQLSTATE 23505), and with it the caller's transaction.
   */
  async addJoins(joins: Join[]): Promise<void> {
    if (joins.length === 0) return;
    if (!this.sql.copyFrom) {
      await this.insertJoins(joins, false);
      return;
    }
    let data = '';
    for (const j of joins) {
      data += `${copyTextField(j.forest)}\t${copyTextField(j.anchor)}\t${copyTextField(j.sourceDn)}\t${copyTextField(
        j.contactDn,
      )}\t${copyTextField(j.sipAddress)}\t${j.state}\t${copyTextField(JSON.stringify(j.attributes))}\t${
        j.attributesHash
      }\t${copyField(j.disabledAt?.toISOString())}\t${copyField(j.disabledReason)}\n`;
    }
    await this.sql.copyFrom('directory_joins', JOIN_COLUMNS, data);
  }

  /** Upserts joins in one statement, whatever their number. */
  async saveJoins(joins: Join[]): Promise<void> {
    await this.insertJoins(joins, true);
  }

  private async insertJoins(joins: Join[], upsert: boolean): Promise<void> {
    if (joins.length === 0) return;
    await this.sql.query(
      `INSERT INTO directory_joins (${JOIN_COLUMNS.join(', ')})
       SELECT f, a, s, c, sip, st, attrs::jsonb, h, d::timestamptz, r
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[]) AS t(f, a, s, c, sip, st, attrs, h, d, r)
       ${
         upsert
           ? `ON CONFLICT (forest, anchor) DO UPDATE SET
         source_dn = EXCLUDED.source_dn, contact_dn = EXCLUDED.contact_dn, sip_address = EXCLUDED.sip_address,
         state = EXCLUDED.state, attributes = EXCLUDED.attributes, attributes_hash = EXCLUDED.attributes_hash,
         disabled_at = EXCLUDED.disabled_at, disabled_reason = EXCLUDED.disabled_reason, updated_at = now()`
           : ''
       }`,
      [
        joins.map((j) => j.forest),
        joins.map((j) => j.anchor),
        joins.map((j) => j.sourceDn),
        joins.map((j) => j.contactDn),
        joins.map((j) => j.sipAddress),
        joins.map((j) => j.state),
        joins.map((j) => JSON.stringify(j.attributes)),
        joins.map((j) => j.attributesHash),
        joins.map((j) => (j.disabledAt ? j.disabledAt.toISOString() : null)),
        joins.map((j) => j.disabledReason ?? null),
      ],
    );
  }

  async deleteJoins(forest: string, anchors: string[]): Promise<void> {
    if (anchors.length === 0) return;
    await this.sql.query(`DELETE FROM directory_joins WHERE forest = $1 AND anchor = ANY($2::text[])`, [
      forest,
      anchors,
    ]);
  }
}
