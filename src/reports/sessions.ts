import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { NO_SERVERS } from '../ops/status.js';
import type { Binding } from '../registrar/location.js';
import { hostReference } from '../sip/host.js';
import type { ServerRecord } from '../store/servers.js';

/** The settings key of the secret `parley server sessions` shows a server (store access is the right to see sessions). */
export const SESSIONS_SECRET_KEY = 'ops_sessions_token';

export interface SessionEndpoint {
  contact: string;
  /** Where the endpoint's connection (or last request) comes from: transport and address:port. */
  transport: string | null;
  address: string | null;
  userAgent: string;
  expiresInSeconds: number;
}

/** A subscription a user holds (RFC 6665): the event package, whom it watches, its state and expiry. */
export interface SessionSubscription {
  event: string;
  /** The resource watched: a presentity, or the user itself for its contact list. */
  target: string;
  state: string;
  expiresInSeconds: number;
}

export interface UserSession {
  aor: string;
  endpoints: SessionEndpoint[];
  /** The subscriptions this user holds on this server, each with its event and expiry. */
  subscriptions: SessionSubscription[];
  /** Presentities this user watches (SUBSCRIBE dialogs held on this server). */
  watching: string[];
  /** Watchers of this user on this server. */
  watchedBy: string[];
}

export interface ServerSessions {
  server: string;
  users: UserSession[];
}

export interface SessionSources {
  serverId: string;
  aors(): Iterable<string>;
  lookup(aor: string): Binding[];
  /** The flow's transport and remote address, when it is still open here. */
  flow(id: string): { transport: string; remoteAddress: string; remotePort: number } | undefined;
  /** The subscriptions held here. */
  subscriptions(): Iterable<{
    watcher: string;
    presentity: string;
    event: string;
    state: string;
    expiresAt: number;
  }>;
  now?: () => number;
}

/** What this server holds now, optionally for one user: `GET /sessions` of the operations endpoint. */
export function snapshotSessions(src: SessionSources, user?: string): ServerSessions {
  const now = src.now?.() ?? Date.now();
  const users = new Map<string, UserSession>();
  const session = (aor: string) => {
    let s = users.get(aor);
    if (!s) {
      s = { aor, endpoints: [], subscriptions: [], watching: [], watchedBy: [] };
      users.set(aor, s);
    }
    return s;
  };
  for (const aor of src.aors()) {
    if (user && aor !== user) continue;
    for (const b of src.lookup(aor)) {
      // The connection it is reached over (an RFC 5626 flow, or the one its binding lives
      // with) while it is open here; else where its REGISTER came from (UDP, a closed
      // connection, a proxy's Path).
      const id = b.flowId ?? b.connectionId;
      const flow = id ? src.flow(id) : undefined;
      session(aor).endpoints.push({
        contact: b.contact,
        transport: flow?.transport ?? b.source?.transport ?? null,
        address: flow
          ? `${hostReference(flow.remoteAddress)}:${flow.remotePort}`
          : (b.source?.address ?? null),
        userAgent: b.userAgent,
        expiresInSeconds: Math.max(0, Math.round((b.expiresAt - now) / 1000)),
      });
    }
  }
  for (const sub of src.subscriptions()) {
    if (!user || sub.watcher === user) {
      const s = session(sub.watcher);
      s.subscriptions.push({
        event: sub.event,
        target: sub.presentity,
        state: sub.state,
        expiresInSeconds: Math.max(0, Math.round((sub.expiresAt - now) / 1000)),
      });
      if (sub.event === 'presence') s.watching.push(sub.presentity);
    }
    if (sub.event === 'presence' && (!user || sub.presentity === user))
      session(sub.presentity).watchedBy.push(sub.watcher);
  }
  for (const s of users.values())
    s.subscriptions.sort((a, b) => a.event.localeCompare(b.event) || a.target.localeCompare(b.target));
  return { server: src.serverId, users: [...users.values()].sort((a, b) => a.aor.localeCompare(b.aor)) };
}

/** The `/sessions` route: only for a bearer of the store's sessions secret; `?user=` narrows it. */
export function sessionsRoute(
  secret: Buffer,
  snapshot: (user?: string) => ServerSessions,
): (req: IncomingMessage) => Promise<{ status: number; body: unknown }> {
  const expected = Buffer.from(`Bearer ${secret.toString('hex')}`);
  return async (req) => {
    const given = Buffer.from(req.headers.authorization ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return { status: 401, body: { error: 'sessions need the store secret: use `parley server sessions`' } };
    const user = new URL(req.url ?? '/', 'http://x').searchParams.get('user') ?? undefined;
    return { status: 200, body: snapshot(user?.toLowerCase()) };
  };
}

export interface DeploymentSessions {
  users: Array<UserSession & { server: string }>;
  servers: Array<{ id: string; reachable: boolean; users: number; error?: string }>;
}

/** `parley server sessions`: every registered server's sessions, with the store's secret. */
export async function collectSessions(
  servers: readonly ServerRecord[],
  opts: { secret: Buffer; user?: string; timeoutMs: number },
): Promise<DeploymentSessions> {
  const out: DeploymentSessions = { users: [], servers: [] };
  await Promise.all(
    servers.map(async (s) => {
      if (!s.healthUrl) {
        out.servers.push({
          id: s.id,
          reachable: false,
          users: 0,
          error: 'no operations endpoint registered',
        });
        return;
      }
      const url = new URL(s.healthUrl.replace(/\/health$/, '/sessions'));
      if (opts.user) url.searchParams.set('user', opts.user);
      try {
        const res = await fetch(url, {
          signal: AbortSignal.timeout(opts.timeoutMs),
          headers: { Accept: 'application/json', Authorization: `Bearer ${opts.secret.toString('hex')}` },
        });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const body = (await res.json()) as ServerSessions;
        for (const u of body.users) out.users.push({ ...u, server: s.id });
        out.servers.push({ id: s.id, reachable: true, users: body.users.length });
      } catch (err) {
        out.servers.push({ id: s.id, reachable: false, users: 0, error: (err as Error).message });
      }
    }),
  );
  out.users.sort((a, b) => a.aor.localeCompare(b.aor) || a.server.localeCompare(b.server));
  out.servers.sort((a, b) => a.id.localeCompare(b.id));
  return out;
}

export function renderSessions(d: DeploymentSessions): string[] {
  const lines: string[] = [];
  for (const u of d.users) {
    lines.push(`${u.aor}  (on ${u.server})`);
    for (const e of u.endpoints)
      lines.push(
        `  endpoint  ${e.address ?? '-'} ${e.transport ?? ''}  ${e.userAgent || '(no User-Agent)'}  expires in ${e.expiresInSeconds} s  ${e.contact}`,
      );
    for (const sub of u.subscriptions)
      lines.push(
        `  subscribed ${sub.event} ${sub.target}  ${sub.state}  expires in ${sub.expiresInSeconds} s`,
      );
    if (u.watchedBy.length) lines.push(`  watched by ${u.watchedBy.join(', ')}`);
  }
  const endpoints = d.users.reduce((n, u) => n + u.endpoints.length, 0);
  lines.push(
    `${d.users.length} user(s), ${endpoints} endpoint(s) on ${d.servers.filter((s) => s.reachable).length} server(s)`,
  );
  for (const s of d.servers.filter((x) => !x.reachable)) lines.push(`${s.id}: not shown (${s.error})`);
  if (d.servers.length === 0) lines.push(...NO_SERVERS);
  return lines;
}
