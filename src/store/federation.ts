import type { Sql } from './sql.js';

/** LISTEN/NOTIFY channel: a federation entry changed (payload: the domain or FQDN). */
export const FEDERATION_CHANNEL = 'parley_federation';

export type FederationAction = 'allow' | 'block' | 'clearinghouse';

/**
 * One row of the federation policy: a partner domain allowed (optionally pinned to its edge's
 * FQDN) or blocked, or the clearinghouse (its FQDN in `domain`; at most one).
 */
export interface FederationEntry {
  domain: string;
  action: FederationAction;
  edgeFqdn?: string;
  note: string;
  updatedAt: Date;
}

interface FederationRow {
  domain: string;
  action: FederationAction;
  edge_fqdn: string | null;
  note: string;
  updated_at: Date | string;
}

function toEntry(row: FederationRow): FederationEntry {
  const entry: FederationEntry = {
    domain: row.domain,
    action: row.action,
    note: row.note,
    updatedAt: row.updated_at instanceof Date ? row.updated_at : new Date(row.updated_at),
  };
  if (row.edge_fqdn) entry.edgeFqdn = row.edge_fqdn;
  return entry;
}

/**
 * The federation_partners table. A domain is either allowed or blocked (one row per domain),
 * so the two lists never contradict each other. Every write notifies FEDERATION_CHANNEL so
 * running edges reload the policy without a restart.
 */
export class FederationRepository {
  constructor(private readonly sql: Sql) {}

  async list(action?: FederationAction): Promise<FederationEntry[]> {
    const { rows } = action
      ? await this.sql.query<FederationRow>(
          'SELECT domain, action, edge_fqdn, note, updated_at FROM federation_partners WHERE action = $1 ORDER BY domain',
          [action],
        )
      : await this.sql.query<FederationRow>(
          'SELECT domain, action, edge_fqdn, note, updated_at FROM federation_partners ORDER BY action, domain',
        );
    return rows.map(toEntry);
  }

  async get(domain: string): Promise<FederationEntry | undefined> {
    const { rows } = await this.sql.query<FederationRow>(
      'SELECT domain, action, edge_fqdn, note, updated_at FROM federation_partners WHERE domain = $1',
      [domain],
    );
    return rows[0] ? toEntry(rows[0]) : undefined;
  }

  /** Allows or blocks a domain, replacing what it was; returns the previous entry. */
  async put(entry: {
    domain: string;
    action: 'allow' | 'block';
    edgeFqdn?: string;
    note?: string;
  }): Promise<{ entry: FederationEntry; previous?: FederationEntry }> {
    return this.sql.transaction(async (tx) => {
      const repo = new FederationRepository(tx);
      const previous = await repo.get(entry.domain);
      if (previous?.action === 'clearinghouse')
        throw new Error(`${entry.domain} is the clearinghouse: clear it before listing it as a partner`);
      const { rows } = await tx.query<FederationRow>(
        `INSERT INTO federation_partners (domain, action, edge_fqdn, note, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (domain) DO UPDATE
           SET action = EXCLUDED.action, edge_fqdn = EXCLUDED.edge_fqdn, note = EXCLUDED.note, updated_at = now()
         RETURNING domain, action, edge_fqdn, note, updated_at`,
        [entry.domain, entry.action, entry.edgeFqdn ?? null, entry.note ?? ''],
      );
      await tx.query('SELECT pg_notify($1, $2)', [FEDERATION_CHANNEL, entry.domain]);
      return { entry: toEntry(rows[0]), previous };
    });
  }

  /** Removes a domain from the allow or block list; false when it was not on that list. */
  async remove(domain: string, action: 'allow' | 'block'): Promise<boolean> {
    return this.sql.transaction(async (tx) => {
      const { affectedRows } = await tx.query(
        'DELETE FROM federation_partners WHERE domain = $1 AND action = $2',
        [domain, action],
      );
      if (affectedRows > 0) await tx.query('SELECT pg_notify($1, $2)', [FEDERATION_CHANNEL, domain]);
      return affectedRows > 0;
    });
  }

  /** Makes `fqdn` the one clearinghouse, replacing any other; returns the one it replaced. */
  async setClearinghouse(fqdn: string, note = ''): Promise<{ previous?: string }> {
    return this.sql.transaction(async (tx) => {
      const existing = await new FederationRepository(tx).get(fqdn);
      if (existing && existing.action !== 'clearinghouse')
        throw new Error(`${fqdn} is on the ${existing.action} list: remove it there first`);
      const { rows } = await tx.query<{ domain: string }>(
        "DELETE FROM federation_partners WHERE action = 'clearinghouse' RETURNING domain",
      );
      await tx.query(
        "INSERT INTO federation_partners (domain, action, note, updated_at) VALUES ($1, 'clearinghouse', $2, now())",
        [fqdn, note],
      );
      await tx.query('SELECT pg_notify($1, $2)', [FEDERATION_CHANNEL, fqdn]);
      const previous = rows.map((r) => r.domain).find((d) => d !== fqdn);
      return previous ? { previous } : {};
    });
  }

  /** Removes the clearinghouse; returns its FQDN, or undefined when there was none. */
  async clearClearinghouse(): Promise<string | undefined> {
    return this.sql.transaction(async (tx) => {
      const { rows } = await tx.query<{ domain: string }>(
        "DELETE FROM federation_partners WHERE action = 'clearinghouse' RETURNING domain",
      );
      if (rows.length > 0) await tx.query('SELECT pg_notify($1, $2)', [FEDERATION_CHANNEL, rows[0].domain]);
      return rows[0]?.domain;
    });
  }
}
