import type { Sql } from './sql.js';

export type ClientAction = 'allow' | 'block' | 'upgrade';

/** One rule: a product token (or `*` for any client) and a range of its versions. */
export interface ClientRule {
  id: number;
  /** 1-based; the first matching rule decides. */
  position: number;
  product: string;
  /** Space-separated comparators (`>=3.10 <4`), all of which must hold; `*` for any version. */
  versions: string;
  action: ClientAction;
  upgradeUrl?: string;
  reason: string;
}

/** What clients no rule matches get. */
export interface ClientDefault {
  action: ClientAction;
  upgradeUrl?: string;
  reason: string;
}

/** LISTEN/NOTIFY channel: the client version rules changed (payload: what changed, for logs). */
export const CLIENT_POLICIES_CHANNEL = 'parley_client_policies';

interface RuleRow {
  id: number;
  position: number;
  product: string;
  versions: string;
  action: ClientAction;
  upgrade_url: string | null;
  reason: string;
}

const RULE_COLUMNS = 'id, position, product, versions, action, upgrade_url, reason';

function toRule(row: RuleRow): ClientRule {
  const rule: ClientRule = {
    id: Number(row.id),
    position: row.position,
    product: row.product,
    versions: row.versions,
    action: row.action,
    reason: row.reason,
  };
  if (row.upgrade_url) rule.upgradeUrl = row.upgrade_url;
  return rule;
}

export interface NewClientRule {
  product: string;
  versions: string;
  action: ClientAction;
  upgradeUrl?: string;
  reason?: string;
  /** 1-based place among the rules; default: last. */
  position?: number;
}

/**
 * The client_policies table (rules in order, positions always 1..n) and its default. Every
 * change notifies CLIENT_POLICIES_CHANNEL inside its transaction, so running servers
 * recompile the rules once it is committed.
 */
export class ClientPolicyRepository {
  constructor(private readonly sql: Sql) {}

  async list(): Promise<ClientRule[]> {
    const { rows } = await this.sql.query<RuleRow>(
      `SELECT ${RULE_COLUMNS} FROM client_policies ORDER BY position, id`,
    );
    return rows.map(toRule);
  }

  async get(id: number): Promise<ClientRule | undefined> {
    const { rows } = await this.sql.query<RuleRow>(
      `SELECT ${RULE_COLUMNS} FROM client_policies WHERE id = $1`,
      [id],
    );
    return rows[0] ? toRule(rows[0]) : undefined;
  }

  async getDefault(): Promise<ClientDefault> {
    const { rows } = await this.sql.query<{
      action: ClientAction;
      upgrade_url: string | null;
      reason: string;
    }>('SELECT action, upgrade_url, reason FROM client_policy_default');
    const row = rows[0] ?? { action: 'allow', upgrade_url: null, reason: '' };
    const d: ClientDefault = { action: row.action, reason: row.reason };
    if (row.upgrade_url) d.upgradeUrl = row.upgrade_url;
    return d;
  }

  /** The rules and the default as one consistent read. */
  async load(): Promise<{ rules: ClientRule[]; fallback: ClientDefault }> {
    return this.sql.transaction(async (tx) => {
      const repo = new ClientPolicyRepository(tx);
      return { rules: await repo.list(), fallback: await repo.getDefault() };
    });
  }

  /** Adds a rule at its position (the rules from there move down one); returns it. */
  async add(rule: NewClientRule): Promise<ClientRule> {
    return this.sql.transaction(async (tx) => {
      await tx.query('LOCK TABLE client_policies IN EXCLUSIVE MODE');
      const { rows: count } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM client_policies');
      const position = Math.min(Math.max(rule.position ?? count[0].n + 1, 1), count[0].n + 1);
      await tx.query('UPDATE client_policies SET position = position + 1 WHERE position >= $1', [position]);
      const { rows } = await tx.query<RuleRow>(
        `INSERT INTO client_policies (product, versions, action, upgrade_url, reason, position)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${RULE_COLUMNS}`,
        [rule.product, rule.versions, rule.action, rule.upgradeUrl ?? null, rule.reason ?? '', position],
      );
      await tx.query('SELECT pg_notify($1, $2)', [CLIENT_POLICIES_CHANNEL, `add ${rows[0].id}`]);
      return toRule(rows[0]);
    });
  }

  /** Removes a rule (the ones below move up); returns it, or undefined when there is none. */
  async remove(id: number): Promise<ClientRule | undefined> {
    return this.sql.transaction(async (tx) => {
      await tx.query('LOCK TABLE client_policies IN EXCLUSIVE MODE');
      const { rows } = await tx.query<RuleRow>(
        `DELETE FROM client_policies WHERE id = $1 RETURNING ${RULE_COLUMNS}`,
        [id],
      );
      if (!rows[0]) return undefined;
      await tx.query('UPDATE client_policies SET position = position - 1 WHERE position > $1', [
        rows[0].position,
      ]);
      await tx.query('SELECT pg_notify($1, $2)', [CLIENT_POLICIES_CHANNEL, `remove ${id}`]);
      return toRule(rows[0]);
    });
  }

  /** Moves a rule to a 1-based position (clamped to the list); undefined when there is no such rule. */
  async move(id: number, position: number): Promise<ClientRule | undefined> {
    return this.sql.transaction(async (tx) => {
      await tx.query('LOCK TABLE client_policies IN EXCLUSIVE MODE');
      const repo = new ClientPolicyRepository(tx);
      const rules = await repo.list();
      const from = rules.findIndex((r) => r.id === id);
      if (from < 0) return undefined;
      const [moved] = rules.splice(from, 1);
      const to = Math.min(Math.max(position, 1), rules.length + 1) - 1;
      rules.splice(to, 0, moved);
      const ids = rules.map((r) => r.id);
      await tx.query(
        'UPDATE client_policies p SET position = o.n FROM unnest($1::bigint[]) WITH ORDINALITY AS o(id, n) WHERE p.id = o.id',
        [ids],
      );
      await tx.query('SELECT pg_notify($1, $2)', [CLIENT_POLICIES_CHANNEL, `move ${id}`]);
      return repo.get(id);
    });
  }

  /** Replaces every rule and the default at once (`parley config import`), in the order given. */
  async replaceAll(
    rules: readonly Omit<NewClientRule, 'position'>[],
    fallback: ClientDefault,
  ): Promise<ClientRule[]> {
    return this.sql.transaction(async (tx) => {
      await tx.query('LOCK TABLE client_policies IN EXCLUSIVE MODE');
      await tx.query('DELETE FROM client_policies');
      const added: ClientRule[] = [];
      for (const [i, rule] of rules.entries()) {
        const { rows } = await tx.query<RuleRow>(
          `INSERT INTO client_policies (product, versions, action, upgrade_url, reason, position)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${RULE_COLUMNS}`,
          [rule.product, rule.versions, rule.action, rule.upgradeUrl ?? null, rule.reason ?? '', i + 1],
        );
        added.push(toRule(rows[0]));
      }
      await new ClientPolicyRepository(tx).setDefault(fallback);
      return added;
    });
  }

  async setDefault(fallback: ClientDefault): Promise<ClientDefault> {
    return this.sql.transaction(async (tx) => {
      const previous = await new ClientPolicyRepository(tx).getDefault();
      await tx.query(
        `INSERT INTO client_policy_default (only_row, action, upgrade_url, reason) VALUES (true, $1, $2, $3)
         ON CONFLICT (only_row) DO UPDATE SET action = EXCLUDED.action, upgrade_url = EXCLUDED.upgrade_url, reason = EXCLUDED.reason`,
        [fallback.action, fallback.upgradeUrl ?? null, fallback.reason],
      );
      await tx.query('SELECT pg_notify($1, $2)', [CLIENT_POLICIES_CHANNEL, 'default']);
      return previous;
    });
  }
}
