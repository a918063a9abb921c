import type { Sql } from './sql.js';

/** One Contact of an AOR (RFC 3261 10.3), with the flow it arrived on (RFC 5626). */
export interface RegistrationBinding {
  aor: string;
  contact: string;
  /** +sip.instance (RFC 5626 4.1), when the endpoint sent one. */
  instanceId: string | null;
  callId: string;
  cseq: number;
  expiresAt: Date;
  q: number;
  userAgent: string;
  /** Server holding the flow, and the flow (connection) on it. */
  serverId: string;
  flowId: string;
  /** Path header values (RFC 3327), comma-joined, when an edge or director added them. */
  path: string | null;
}

export type NewBinding = Omit<RegistrationBinding, 'instanceId' | 'q' | 'userAgent' | 'path'> &
  Partial<Pick<RegistrationBinding, 'instanceId' | 'q' | 'userAgent' | 'path'>>;

interface BindingRow {
  aor: string;
  contact: string;
  instance_id: string | null;
  call_id: string;
  cseq: number;
  expires_at: Date;
  q: number;
  user_agent: string;
  server_id: string;
  flow_id: string;
  path: string | null;
}

/**
 * Change feed of the pool's registrations table: the AORs whose bindings changed, one per
 * line, several to a notification (a batch of the registrar's write-behind is one
 * statement); '' when any AOR may have changed (a server's bindings dropped at once).
 * Front-ends keep their cache of each other's bindings current from it (src/registrar/mirror.ts).
 */
export const REGISTRATIONS_CHANNEL = 'parley_registrations';

/** PostgreSQL refuses a payload of 8,000 bytes or more: AORs are packed below that. */
const PAYLOAD_BYTES = 7_000;

/** The AORs as notification payloads, each under PostgreSQL's limit. */
export function registrationPayloads(aors: Iterable<string>): string[] {
  const out: string[] = [];
  let current = '';
  let bytes = 0;
  for (const aor of new Set(aors)) {
    const size = Buffer.byteLength(aor) + 1;
    if (bytes > 0 && bytes + size > PAYLOAD_BYTES) {
      out.push(current);
      current = '';
      bytes = 0;
    }
    current = bytes === 0 ? aor : `${current}\n${aor}`;
    bytes += size;
  }
  if (bytes > 0) out.push(current);
  return out;
}

/** The AORs a payload of REGISTRATIONS_CHANNEL names; undefined for "any AOR". */
export function registrationPayloadAors(payload: string): string[] | undefined {
  return payload === '' ? undefined : payload.split('\n');
}

const COLUMNS =
  'aor, contact, instance_id, call_id, cseq, expires_at, q, user_agent, server_id, flow_id, path';

function toBinding(r: BindingRow): RegistrationBinding {
  return {
    aor: r.aor,
    contact: r.contact,
    instanceId: r.instance_id,
    callId: r.call_id,
    cseq: r.cseq,
    expiresAt: r.expires_at,
    q: r.q,
    userAgent: r.user_agent,
    serverId: r.server_id,
    flowId: r.flow_id,
    path: r.path,
  };
}

export class RegistrationRepository {
  constructor(private readonly sql: Sql) {}

  upsertBinding(binding: NewBinding): Promise<number> {
    return this.upsertBindings([binding]);
  }

  /**
   * Writes a batch in one statement (unnest of column arrays: a fixed 11 parameters
   * whatever the batch size), for the registrar's write-behind. Later entries for the same
   * (aor, contact) win, as ON CONFLICT may not touch one row twice in a statement. The same
   * statement announces the AORs on REGISTRATIONS_CHANNEL (delivered once it commits).
   */
  async upsertBindings(batch: NewBinding[]): Promise<number> {
    const latest = new Map<string, NewBinding>();
    for (const b of batch) latest.set(`${b.aor}\n${b.contact}`, b);
    if (latest.size === 0) return 0;
    const rows = [...latest.values()];
    const res = await this.sql.query<{ written: number }>(
      `WITH up AS (
         INSERT INTO registrations (${COLUMNS}, updated_at)
         SELECT *, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[],
                                     $7::real[], $8::text[], $9::text[], $10::text[], $11::text[])
         ON CONFLICT (aor, contact) DO UPDATE SET
           instance_id = EXCLUDED.instance_id, call_id = EXCLUDED.call_id, cseq = EXCLUDED.cseq,
           expires_at = EXCLUDED.expires_at, q = EXCLUDED.q, user_agent = EXCLUDED.user_agent,
           server_id = EXCLUDED.server_id, flow_id = EXCLUDED.flow_id, path = EXCLUDED.path, updated_at = now()
         RETURNING 1
       ), notified AS (SELECT pg_notify($12, p)::text FROM unnest($13::text[]) AS p)
       SELECT (SELECT count(*) FROM up)::int AS written, (SELECT count(*) FROM notified)::int AS notified`,
      [
        rows.map((b) => b.aor),
        rows.map((b) => b.contact),
        rows.map((b) => b.instanceId ?? null),
        rows.map((b) => b.callId),
        rows.map((b) => b.cseq),
        rows.map((b) => b.expiresAt.toISOString()),
        rows.map((b) => b.q ?? 1),
        rows.map((b) => b.userAgent ?? ''),
        rows.map((b) => b.serverId),
        rows.map((b) => b.flowId),
        rows.map((b) => b.path ?? null),
        REGISTRATIONS_CHANNEL,
        registrationPayloads(rows.map((b) => b.aor)),
      ],
    );
    return res.rows[0].written;
  }

  /**
   * Removes a binding the server holds, and only its row: the endpoint may already have
   * registered again through another front-end.
   */
  async removeBinding(aor: string, contact: string, serverId: string): Promise<boolean> {
    return (await this.removeBindings([{ aor, contact }], serverId)) > 0;
  }

  /**
   * Removes many bindings the server holds in one statement (a front-end whose connection
   * with thousands of users closed), each only if it is still this server's row; the AORs
   * removed are announced on REGISTRATIONS_CHANNEL, packed as upsertBindings packs them.
   * Returns how many rows went.
   */
  async removeBindings(keys: Array<{ aor: string; contact: string }>, serverId: string): Promise<number> {
    if (keys.length === 0) return 0;
    const res = await this.sql.query<{ aor: string }>(
      `DELETE FROM registrations r USING unnest($1::text[], $2::text[]) AS k(aor, contact)
       WHERE r.aor = k.aor AND r.contact = k.contact AND r.server_id = $3 RETURNING r.aor`,
      [keys.map((k) => k.aor), keys.map((k) => k.contact), serverId],
    );
    if (res.rows.length > 0) {
      await this.sql.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', [
        REGISTRATIONS_CHANNEL,
        registrationPayloads(res.rows.map((r) => r.aor)),
      ]);
    }
    return res.rows.length;
  }

  /** REGISTER with Contact: * and Expires: 0 (RFC 3261 10.2.2). */
  async removeAllForAor(aor: string): Promise<number> {
    const res = await this.sql.query<{ n: number }>(
      `WITH d AS (DELETE FROM registrations WHERE aor = $1 RETURNING 1), n AS (SELECT count(*)::int AS n FROM d)
       SELECT n, CASE WHEN n > 0 THEN pg_notify($2, $1)::text END FROM n`,
      [aor, REGISTRATIONS_CHANNEL],
    );
    return res.rows[0].n;
  }

  /**
   * Which of these AORs have an unexpired binding held by a server other than `serverId`
   * (signed in through another front-end), in one statement.
   */
  async signedInElsewhere(
    aors: readonly string[],
    serverId: string,
    now: Date = new Date(),
  ): Promise<string[]> {
    if (aors.length === 0) return [];
    const res = await this.sql.query<{ aor: string }>(
      `SELECT DISTINCT aor FROM registrations
        WHERE aor = ANY($1::text[]) AND server_id <> $2 AND expires_at > $3`,
      [aors, serverId, now],
    );
    return res.rows.map((r) => r.aor);
  }

  /** Unexpired bindings, highest q first (RFC 3261 16.6 tries higher q first). */
  async listBindings(aor: string, now: Date = new Date()): Promise<RegistrationBinding[]> {
    const res = await this.sql.query<BindingRow>(
      `SELECT ${COLUMNS} FROM registrations WHERE aor = $1 AND expires_at > $2 ORDER BY q DESC, contact`,
      [aor, now],
    );
    return res.rows.map(toBinding);
  }

  /** What a restarting server reloads, or what another front-end takes over. */
  async listForServer(serverId: string, now: Date = new Date()): Promise<RegistrationBinding[]> {
    const res = await this.sql.query<BindingRow>(
      `SELECT ${COLUMNS} FROM registrations WHERE server_id = $1 AND expires_at > $2 ORDER BY aor, contact`,
      [serverId, now],
    );
    return res.rows.map(toBinding);
  }

  /** Not announced: an expired binding is invisible to every reader already. */
  async removeExpired(now: Date = new Date()): Promise<number> {
    const res = await this.sql.query('DELETE FROM registrations WHERE expires_at <= $1', [now]);
    return res.affectedRows;
  }

  /** A server that went down takes its flows with it: its bindings are unreachable. */
  async removeForServer(serverId: string): Promise<number> {
    const res = await this.sql.query<{ n: number }>(
      `WITH d AS (DELETE FROM registrations WHERE server_id = $1 RETURNING 1), n AS (SELECT count(*)::int AS n FROM d)
       SELECT n, CASE WHEN n > 0 THEN pg_notify($2, '')::text END FROM n`,
      [serverId, REGISTRATIONS_CHANNEL],
    );
    return res.rows[0].n;
  }

  async countActive(now: Date = new Date()): Promise<{ bindings: number; aors: number }> {
    const res = await this.sql.query<{ bindings: number; aors: number }>(
      'SELECT count(*)::int AS bindings, count(DISTINCT aor)::int AS aors FROM registrations WHERE expires_at > $1',
      [now],
    );
    return res.rows[0];
  }
}
