import { jsonColumn, type Sql } from './sql.js';
import { normalizeAor } from './users.js';

/**
 * The journal of wave migrations (004_migration_waves.sql), kept in the target home's
 * store: waves, each user's step, and the one-run-at-a-time lock. `parley migrate`
 * (src/migration/) is its only user. A step's writes to the target and its journal state
 * go through `store.transaction`, so they commit together.
 */

export type WaveState = 'running' | 'moved' | 'done' | 'rolling-back' | 'rolled-back';

/** pending -> copied -> placed -> moved forward; back-copied -> back-placed -> returned on rollback. */
export type WaveUserState =
  | 'pending'
  | 'copied'
  | 'placed'
  | 'moved'
  | 'back-copied'
  | 'back-placed'
  | 'returned'
  | 'failed';

export interface WaveRecord {
  name: string;
  sourceHome: string;
  targetHome: string;
  state: WaveState;
  users: number;
  startedAt: Date;
  finishedAt?: Date;
  verifiedAt?: Date;
  updatedAt: Date;
  summary?: Record<string, unknown>;
}

export interface WaveUserRecord {
  aor: string;
  state: WaveUserState;
  checksum?: string;
  error?: string;
}

export interface MigrationLockHolder {
  holder: string;
  wave?: string;
  acquiredAt: Date;
  heartbeatAt: Date;
}

const LOCK = 'migration';

interface WaveRow {
  name: string;
  source_home: string;
  target_home: string;
  state: WaveState;
  users: number;
  started_at: Date;
  finished_at: Date | null;
  verified_at: Date | null;
  updated_at: Date;
  summary: Record<string, unknown> | string | null;
}

const WAVE_COLUMNS =
  'name, source_home, target_home, state, users, started_at, finished_at, verified_at, updated_at, summary';

function toWave(r: WaveRow): WaveRecord {
  return {
    name: r.name,
    sourceHome: r.source_home,
    targetHome: r.target_home,
    state: r.state,
    users: Number(r.users),
    startedAt: new Date(r.started_at),
    finishedAt: r.finished_at ? new Date(r.finished_at) : undefined,
    verifiedAt: r.verified_at ? new Date(r.verified_at) : undefined,
    updatedAt: new Date(r.updated_at),
    summary: r.summary === null ? undefined : jsonColumn(r.summary),
  };
}

export class MigrationJournalRepository {
  constructor(private readonly sql: Sql) {}

  /**
   * Takes the migration lock for holder (one run, rollback or verify at a time on a target
   * store). A lock whose heartbeat is older than staleSeconds, or whose holder
   * `holderIsDead` says is gone (kill -9), is taken over; otherwise its holder is returned.
   */
  async acquireLock(
    holder: string,
    wave: string,
    staleSeconds: number,
    holderIsDead: (holder: string) => boolean = () => false,
  ): Promise<{ acquired: true } | { acquired: false; heldBy: MigrationLockHolder }> {
    return this.sql.transaction(async (tx) => {
      const inserted = await tx.query(
        'INSERT INTO migration_lock (name, wave, holder) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING',
        [LOCK, wave, holder],
      );
      if (inserted.affectedRows === 1) return { acquired: true as const };
      const { rows } = await tx.query<{
        holder: string;
        wave: string | null;
        acquired_at: Date;
        heartbeat_at: Date;
        stale: boolean;
      }>(
        `SELECT holder, wave, acquired_at, heartbeat_at, heartbeat_at < now() - make_interval(secs => $2) AS stale
           FROM migration_lock WHERE name = $1 FOR UPDATE`,
        [LOCK, staleSeconds],
      );
      const row = rows[0];
      if (!row || row.stale || row.holder === holder || holderIsDead(row.holder)) {
        await tx.query(
          `INSERT INTO migration_lock (name, wave, holder) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO UPDATE SET wave = $2, holder = $3, acquired_at = now(), heartbeat_at = now()`,
          [LOCK, wave, holder],
        );
        return { acquired: true as const };
      }
      return {
        acquired: false as const,
        heldBy: {
          holder: row.holder,
          wave: row.wave ?? undefined,
          acquiredAt: new Date(row.acquired_at),
          heartbeatAt: new Date(row.heartbeat_at),
        },
      };
    });
  }

  /** False when the lock is no longer ours (taken over as stale). */
  async heartbeat(holder: string): Promise<boolean> {
    const res = await this.sql.query(
      'UPDATE migration_lock SET heartbeat_at = now() WHERE name = $1 AND holder = $2',
      [LOCK, holder],
    );
    return res.affectedRows === 1;
  }

  async releaseLock(holder: string): Promise<void> {
    await this.sql.query('DELETE FROM migration_lock WHERE name = $1 AND holder = $2', [LOCK, holder]);
  }

  async getWave(name: string): Promise<WaveRecord | undefined> {
    const res = await this.sql.query<WaveRow>(`SELECT ${WAVE_COLUMNS} FROM migration_waves WHERE name = $1`, [
      name,
    ]);
    return res.rows[0] ? toWave(res.rows[0]) : undefined;
  }

  async listWaves(): Promise<WaveRecord[]> {
    const res = await this.sql.query<WaveRow>(
      `SELECT ${WAVE_COLUMNS} FROM migration_waves ORDER BY started_at, name`,
    );
    return res.rows.map(toWave);
  }

  /**
   * Records a wave and its users (state pending) unless already recorded: a resumed run
   * finds its users where the interrupted one left them. Users added to the plan since are
   * added; the wave's user count follows.
   */
  async beginWave(wave: {
    name: string;
    sourceHome: string;
    targetHome: string;
    aors: string[];
  }): Promise<WaveRecord> {
    return this.sql.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO migration_waves (name, source_home, target_home, state) VALUES ($1, $2, $3, 'running')
         ON CONFLICT (name) DO NOTHING`,
        [wave.name, wave.sourceHome, wave.targetHome],
      );
      await tx.query(
        `INSERT INTO migration_users (wave, aor, state) SELECT $1, unnest($2::text[]), 'pending'
         ON CONFLICT (wave, aor) DO NOTHING`,
        [wave.name, wave.aors.map(normalizeAor)],
      );
      const res = await tx.query<WaveRow>(
        `UPDATE migration_waves SET users = (SELECT count(*) FROM migration_users WHERE wave = $1), updated_at = now()
          WHERE name = $1 RETURNING ${WAVE_COLUMNS}`,
        [wave.name],
      );
      return toWave(res.rows[0]);
    });
  }

  async setWaveState(
    name: string,
    state: WaveState,
    opts: { summary?: Record<string, unknown>; finished?: boolean; verified?: boolean } = {},
  ): Promise<void> {
    await this.sql.query(
      `UPDATE migration_waves SET state = $2, updated_at = now(),
         summary = coalesce($3::jsonb, summary),
         finished_at = CASE WHEN $4 THEN now() WHEN $2 IN ('running', 'rolling-back') THEN NULL ELSE finished_at END,
         verified_at = CASE WHEN $5 THEN now() WHEN $2 = 'done' THEN verified_at ELSE NULL END
       WHERE name = $1`,
      [
        name,
        state,
        opts.summary === undefined ? null : JSON.stringify(opts.summary),
        opts.finished ?? false,
        opts.verified ?? false,
      ],
    );
  }

  /** Every user of a wave with its step, in aor order. */
  async waveUsers(wave: string): Promise<WaveUserRecord[]> {
    const res = await this.sql.query<{
      aor: string;
      state: WaveUserState;
      checksum: string | null;
      error: string | null;
    }>('SELECT aor, state, checksum, error FROM migration_users WHERE wave = $1 ORDER BY aor COLLATE "C"', [
      wave,
    ]);
    return res.rows.map((r) => ({
      aor: r.aor,
      state: r.state,
      checksum: r.checksum ?? undefined,
      error: r.error ?? undefined,
    }));
  }

  /** Counts of a wave's users per step. */
  async countByState(wave: string): Promise<Partial<Record<WaveUserState, number>>> {
    const res = await this.sql.query<{ state: WaveUserState; n: number }>(
      'SELECT state, count(*)::int AS n FROM migration_users WHERE wave = $1 GROUP BY state',
      [wave],
    );
    return Object.fromEntries(res.rows.map((r) => [r.state, Number(r.n)]));
  }

  /**
   * Moves users of a wave to a step; a checksum given for a user replaces the recorded one,
   * and the error is cleared (or set, for 'failed').
   */
  async setUserStates(
    wave: string,
    updates: { aor: string; state: WaveUserState; checksum?: string; error?: string }[],
  ): Promise<void> {
    if (updates.length === 0) return;
    await this.sql.query(
      `UPDATE migration_users m SET state = u.state, checksum = coalesce(u.checksum, m.checksum), error = u.error, updated_at = now()
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(aor, state, checksum, error)
        WHERE m.wave = $1 AND m.aor = u.aor`,
      [
        wave,
        updates.map((u) => normalizeAor(u.aor)),
        updates.map((u) => u.state),
        updates.map((u) => u.checksum ?? null),
        updates.map((u) => u.error ?? null),
      ],
    );
  }

  /**
   * Which of these users another wave holds: recorded in a wave other than `wave` and not
   * back home (returned) or failed there. A user moves in one wave at a time.
   */
  async heldByOtherWaves(wave: string, aors: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (aors.length === 0) return out;
    const res = await this.sql.query<{ aor: string; wave: string }>(
      `SELECT aor, wave FROM migration_users
        WHERE aor = ANY($1::text[]) AND wave <> $2 AND state NOT IN ('returned', 'failed')`,
      [aors.map(normalizeAor), wave],
    );
    for (const r of res.rows) out.set(r.aor, r.wave);
    return out;
  }
}
