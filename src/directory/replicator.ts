import type { Sql } from '../store/sql.js';
import { CentralDirectory, type CentralEntry } from './central.js';
import type { DirectoryConfig } from './config.js';
import type { Environment } from './ldap.js';

/**
 * Refreshes the Parley user store from the central forest's SIP-enabled users and
 * contacts, so servers answer from the store and never query LDAP on the hot path.
 * Upsert by AOR; users that vanished from the directory are disabled (or deleted with
 * prune); users created locally (source 'local') are never touched.
 */

export interface ReplicationIssue {
  aor: string;
  dn: string;
  code: 'local-user' | 'unknown-home' | 'duplicate-address';
  message: string;
}

export interface ReplicationSummary {
  read: number;
  added: number;
  updated: number;
  disabled: number;
  deleted: number;
  unchanged: number;
  issues: ReplicationIssue[];
  durationMs: number;
}

interface UserRow {
  aor: string;
  display_name: string;
  enabled: boolean;
  home: string | null;
  source: string;
  source_anchor: string | null;
}

interface WantedUser {
  aor: string;
  displayName: string;
  enabled: boolean;
  home: string | null;
  source: string;
  sourceAnchor: string | null;
}

const BATCH = 500;

export interface ReplicateOptions {
  sql: Sql;
  /** Pages of SIP-enabled entries (CentralDirectory.sipEnabled()). */
  entries: AsyncIterable<CentralEntry[]>;
  /** Delete vanished directory users instead of disabling them. */
  prune?: boolean;
  dryRun?: boolean;
}

function wanted(e: CentralEntry & { sipAddress: string }): WantedUser {
  return {
    aor: e.sipAddress,
    displayName: e.displayName,
    enabled: e.enabled,
    home: e.home ?? null,
    source: e.isContact ? `ldap:${e.sourceForest}` : 'ldap:central',
    sourceAnchor: (e.isContact ? e.sourceAnchor : e.entryUuid) ?? null,
  };
}

function differs(row: UserRow, w: WantedUser): boolean {
  return (
    row.display_name !== w.displayName ||
    row.enabled !== w.enabled ||
    row.home !== w.home ||
    row.source !== w.source ||
    row.source_anchor !== w.sourceAnchor
  );
}

export async function replicateUsers(opts: ReplicateOptions): Promise<ReplicationSummary> {
  const started = Date.now();
  const { sql } = opts;
  const summary: ReplicationSummary = {
    read: 0,
    added: 0,
    updated: 0,
    disabled: 0,
    deleted: 0,
    unchanged: 0,
    issues: [],
    durationMs: 0,
  };
  const homes = new Set(
    (await sql.query<{ name: string }>('SELECT name FROM homes')).rows.map((r) => r.name),
  );
  const existing = new Map(
    (
      await sql.query<UserRow>('SELECT aor, display_name, enabled, home, source, source_anchor FROM users')
    ).rows.map((r) => [r.aor, r]),
  );
  const seen = new Set<string>();
  const upserts: WantedUser[] = [];

  for await (const page of opts.entries) {
    for (const e of page) {
      summary.read++;
      if (!e.sipAddress) continue;
      const w = wanted(e as CentralEntry & { sipAddress: string });
      if (seen.has(w.aor)) {
        summary.issues.push({
          aor: w.aor,
          dn: e.dn,
          code: 'duplicate-address',
          message: 'another entry has the same SIP address',
        });
        continue;
      }
      seen.add(w.aor);
      const row = existing.get(w.aor);
      if (row?.source === 'local') {
        summary.issues.push({
          aor: w.aor,
          dn: e.dn,
          code: 'local-user',
          message: 'a local user has this address; left alone',
        });
        continue;
      }
      if (w.home !== null && !homes.has(w.home)) {
        summary.issues.push({
          aor: w.aor,
          dn: e.dn,
          code: 'unknown-home',
          message: `home '${w.home}' does not exist`,
        });
        continue;
      }
      if (!row) summary.added++;
      else if (differs(row, w)) summary.updated++;
      else {
        summary.unchanged++;
        continue;
      }
      upserts.push(w);
    }
  }

  const vanished = [...existing.values()].filter((r) => r.source.startsWith('ldap:') && !seen.has(r.aor));
  const toDelete = opts.prune ? vanished.map((r) => r.aor) : [];
  const toDisable = opts.prune ? [] : vanished.filter((r) => r.enabled).map((r) => r.aor);
  summary.deleted = toDelete.length;
  summary.disabled = toDisable.length;

  if (!opts.dryRun) {
    for (let i = 0; i < upserts.length; i += BATCH) {
      const b = upserts.slice(i, i + BATCH);
      await sql.query(
        `INSERT INTO users (aor, display_name, enabled, home, source, source_anchor)
         SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::text[], $5::text[], $6::text[])
         ON CONFLICT (aor) DO UPDATE SET display_name = EXCLUDED.display_name, enabled = EXCLUDED.enabled,
           home = EXCLUDED.home, source = EXCLUDED.source, source_anchor = EXCLUDED.source_anchor, updated_at = now()
         WHERE users.source <> 'local'`,
        [
          b.map((w) => w.aor),
          b.map((w) => w.displayName),
          b.map((w) => w.enabled),
          b.map((w) => w.home),
          b.map((w) => w.source),
          b.map((w) => w.sourceAnchor),
        ],
      );
    }
    if (toDisable.length > 0) {
      await sql.query(
        `UPDATE users SET enabled = false, updated_at = now() WHERE aor = ANY($1::text[]) AND source LIKE 'ldap:%'`,
        [toDisable],
      );
    }
    if (toDelete.length > 0) {
      await sql.query(`DELETE FROM users WHERE aor = ANY($1::text[]) AND source LIKE 'ldap:%'`, [toDelete]);
    }
  }
  summary.durationMs = Date.now() - started;
  return summary;
}

/** Connects to the central forest and replicates (parley directory replicate). */
export async function replicateFromCentral(opts: {
  sql: Sql;
  config: DirectoryConfig;
  env: Environment;
  prune?: boolean;
  dryRun?: boolean;
}): Promise<ReplicationSummary> {
  const central = await CentralDirectory.connect(opts.config.central, opts.env);
  try {
    return await replicateUsers({
      sql: opts.sql,
      entries: central.sipEnabled(),
      prune: opts.prune ?? opts.config.replicate.prune,
      dryRun: opts.dryRun,
    });
  } finally {
    await central.close();
  }
}

/**
 * What a server runs: replicate now and every interval. A failed round is reported and
 * retried at the next tick; the store keeps serving the last good copy meanwhile.
 */
export function startReplicationTimer(opts: {
  sql: Sql;
  config: DirectoryConfig;
  env: Environment;
  onResult?: (result: ReplicationSummary | Error) => void;
}): { stop(): void } {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      opts.onResult?.(await replicateFromCentral(opts));
    } catch (err) {
      opts.onResult?.(err instanceof Error ? err : new Error(String(err)));
    } finally {
      running = false;
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), opts.config.replicate.intervalSeconds * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
