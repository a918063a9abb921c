import type { RegistrationRepository } from '../store/registrations.js';
import type { ServerRecord, ServerRepository, ServerState } from '../store/servers.js';

/**
 * Servers heartbeat every 5 s (src/roles/server-upkeep.ts), and the others mark one down after
 * 20 s without a beat: past that, the row no longer tells the truth whatever its state says.
 */
export const HEARTBEAT_STALE_SECONDS = 20;

/** A health check must not hang the command on a black-holed host. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;

/** What GET /health of one server said (src/ops/http.ts), or why it said nothing. */
export interface ServerHealth {
  reachable: boolean;
  /** HTTP status: 200 takes traffic, 503 is starting, draining or unhealthy. */
  httpStatus?: number;
  /** `ok`, `draining` or `unhealthy`, from the body. */
  status?: string;
  flows?: number;
  registeredEndpoints?: number;
  signedInUsers?: number;
  subscriptions?: number;
  activeUsers?: number;
  /** `standard` or `high` (security: high): what the server says it runs. */
  security?: string;
  /** Why the check failed (timeout, connection refused, not JSON, no health URL). */
  error?: string;
}

/**
 * What a person should believe about a server: `up` takes traffic; `draining` finishes
 * what it has; `unhealthy` answers but reports a failing dependency; `down` is marked
 * down, has a stale heartbeat, or does not answer its health check.
 */
export type LiveState = 'up' | 'draining' | 'unhealthy' | 'down';

/** A server's row of the servers table (`state` is its state column), its times as ISO text, and how it answers. */
export interface ServerStatus extends Omit<ServerRecord, 'startedAt' | 'heartbeatAt'> {
  live: LiveState;
  startedAt: string;
  heartbeatAt: string;
  heartbeatAgeSeconds: number;
  heartbeatStale: boolean;
  health: ServerHealth;
}

export interface PoolTotals {
  servers: number;
  up: number;
  draining: number;
  unhealthy: number;
  down: number;
  /**
   * Sums over the servers that answered their health check. A user signed in on two
   * front-ends counts on each, so signedInUsers can exceed store.registeredUsers.
   */
  live: {
    flows: number;
    connectedEndpoints: number;
    signedInUsers: number;
    subscriptions: number;
    /** Null when no server reports it. */
    activeUsers: number | null;
  };
  /** Unexpired rows of the registrations table: the pool's shared view. */
  store: {
    registeredEndpoints: number;
    registeredUsers: number;
  };
}

export interface PoolStatus {
  checkedAt: string;
  filter: { role?: string; home?: string };
  servers: ServerStatus[];
  totals: PoolTotals;
}

/** Heartbeat ages use the database clock (servers.clock()): the admin host's clock may be off. */
export interface PoolStatusSource {
  servers: ServerRepository;
  registrations: RegistrationRepository;
}

export interface PoolStatusOptions {
  role?: string;
  home?: string;
  healthTimeoutMs?: number;
  /** Replaced in tests that have no HTTP server to ask. */
  fetchHealth?: (url: string, timeoutMs: number) => Promise<ServerHealth>;
}

/** The servers of the store with their live health, and pool totals. */
export async function collectPoolStatus(
  source: PoolStatusSource,
  opts: PoolStatusOptions = {},
): Promise<PoolStatus> {
  const timeoutMs = opts.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
  const check = opts.fetchHealth ?? fetchHealth;
  const [rows, now, counts] = await Promise.all([
    source.servers.list({ role: opts.role, home: opts.home }),
    source.servers.clock(),
    source.registrations.countActive(),
  ]);
  const servers = await Promise.all(
    rows.map(async (row): Promise<ServerStatus> => {
      const health: ServerHealth = row.healthUrl
        ? await check(row.healthUrl, timeoutMs)
        : { reachable: false, error: 'no health URL registered' };
      const heartbeatAgeSeconds = Math.max(0, Math.round((now.getTime() - row.heartbeatAt.getTime()) / 1000));
      const heartbeatStale = heartbeatAgeSeconds > HEARTBEAT_STALE_SECONDS;
      return {
        id: row.id,
        role: row.role,
        home: row.home,
        address: row.address,
        healthUrl: row.healthUrl,
        state: row.state,
        live: liveState(row.state, heartbeatStale, row.healthUrl !== null, health),
        startedAt: row.startedAt.toISOString(),
        heartbeatAt: row.heartbeatAt.toISOString(),
        heartbeatAgeSeconds,
        heartbeatStale,
        health,
      };
    }),
  );
  return {
    checkedAt: now.toISOString(),
    filter: { ...(opts.role ? { role: opts.role } : {}), ...(opts.home ? { home: opts.home } : {}) },
    servers,
    totals: totalsOf(servers, counts),
  };
}

/**
 * A server's own answer wins over the table (it knows it is draining before the row says
 * so); a server that does not answer is down whatever the row says. Without a health URL
 * only the row and its heartbeat are left to go by.
 */
export function liveState(
  state: ServerState,
  heartbeatStale: boolean,
  hasHealthUrl: boolean,
  health: ServerHealth,
): LiveState {
  if (state === 'down') return 'down';
  if (!hasHealthUrl) return heartbeatStale ? 'down' : state;
  if (!health.reachable) return 'down';
  if (health.status === 'draining' || state === 'draining') return 'draining';
  if (health.status === 'unhealthy' || (health.httpStatus !== undefined && health.httpStatus >= 500))
    return 'unhealthy';
  return 'up';
}

function totalsOf(servers: ServerStatus[], counts: { bindings: number; aors: number }): PoolTotals {
  const count = (s: LiveState) => servers.filter((x) => x.live === s).length;
  const answered = servers.filter((s) => s.health.reachable).map((s) => s.health);
  const sum = (pick: (h: ServerHealth) => number | undefined) =>
    answered.reduce((n, h) => n + (pick(h) ?? 0), 0);
  const reportsActive = answered.some((h) => h.activeUsers !== undefined);
  return {
    servers: servers.length,
    up: count('up'),
    draining: count('draining'),
    unhealthy: count('unhealthy'),
    down: count('down'),
    live: {
      flows: sum((h) => h.flows),
      connectedEndpoints: sum((h) => h.registeredEndpoints),
      signedInUsers: sum((h) => h.signedInUsers),
      subscriptions: sum((h) => h.subscriptions),
      activeUsers: reportsActive ? sum((h) => h.activeUsers) : null,
    },
    store: { registeredEndpoints: counts.bindings, registeredUsers: counts.aors },
  };
}

/**
 * GET a health URL with a deadline. Any HTTP answer with a JSON body is reachable (a
 * draining server answers 503 and is still worth reading); anything else is not.
 */
export async function fetchHealth(
  url: string,
  timeoutMs: number = DEFAULT_HEALTH_TIMEOUT_MS,
): Promise<ServerHealth> {
  let res: Response;
  try {
    res = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: { Accept: 'application/json' },
    });
  } catch (err) {
    return { reachable: false, error: fetchErrorText(err, timeoutMs) };
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    return { reachable: false, httpStatus: res.status, error: `HTTP ${res.status}, body is not JSON` };
  }
  if (typeof body !== 'object' || body === null) {
    return {
      reachable: false,
      httpStatus: res.status,
      error: `HTTP ${res.status}, body is not a JSON object`,
    };
  }
  const b = body as Record<string, unknown>;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const health: ServerHealth = { reachable: true, httpStatus: res.status };
  if (typeof b.status === 'string') health.status = b.status;
  if (typeof b.security === 'string') health.security = b.security;
  for (const key of [
    'flows',
    'registeredEndpoints',
    'signedInUsers',
    'subscriptions',
    'activeUsers',
  ] as const) {
    const v = num(b[key]);
    if (v !== undefined) health[key] = v;
  }
  return health;
}

function fetchErrorText(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

/** What the commands that ask every server of a store print when the store lists none. */
export const NO_SERVERS: readonly string[] = [
  'No server has registered in this store: none has started on it, or they use another store.',
  'A server registers itself when it starts (`parley server start`) and leaves when it stops.',
];

/**
 * The human rendering of `parley server status`: one table, a server a row and a total row,
 * then where each column comes from. The store's registrations table (totals.store in
 * --json) is left out here: on a pool it lags the servers' own view, and two numbers for
 * one thing read as a contradiction.
 */
export function renderPoolStatus(status: PoolStatus): string[] {
  if (status.servers.length === 0) return [...NO_SERVERS];
  const header = [
    'SERVER',
    'ROLE',
    'HOME',
    'STATE',
    'HEARTBEAT',
    'USERS',
    'ENDPOINTS',
    'SUBSCRIPTIONS',
    'SECURITY',
  ];
  const rows = status.servers.map((s) => [
    s.id,
    s.role,
    s.home ?? '-',
    s.live === s.state || s.live === 'up' ? s.live : `${s.live} (row: ${s.state})`,
    `${s.heartbeatAgeSeconds} s ago${s.heartbeatStale ? ' (stale)' : ''}`,
    shown(s.health.signedInUsers),
    shown(s.health.registeredEndpoints),
    shown(s.health.subscriptions),
    s.health.security ?? '-',
  ]);
  const t = status.totals;
  const states = (['up', 'draining', 'unhealthy', 'down'] as const)
    .filter((k) => t[k] > 0)
    .map((k) => `${t[k]} ${k}`)
    .join(', ');
  const total = [
    'TOTAL',
    `${t.servers} server(s)`,
    '',
    states,
    '',
    String(t.live.signedInUsers),
    String(t.live.connectedEndpoints),
    String(t.live.subscriptions),
    '',
  ];
  const all = [header, ...rows, total];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const out = [line(header), ...rows.map(line), line(total)];
  for (const s of status.servers) {
    if (s.health.error) out.push(`  ${s.id}: health check failed: ${s.health.error}`);
  }
  out.push(
    '',
    'STATE      what the server answers on /health (down when it does not answer), else its row in the store.',
    'HEARTBEAT  the servers table in the store: a server writes it every 5 s.',
    "USERS, ENDPOINTS, SUBSCRIPTIONS  each server's /health: the users signed in, the endpoints registered",
    '           and the presence subscriptions it holds now ("-" when it did not answer). A user signed in',
    '           on two front-ends counts on each.',
    'SECURITY   the mode each server runs: high (security: high) takes clients over TLS and WSS only and SHA-256 digests only.',
  );
  return out;
}
function shown(n: number | undefined): string {
  return n === undefined ? '-' : String(n);
}
