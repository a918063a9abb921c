import type { ServerRepository, ServerState } from '../store/servers.js';
import type { ChangeFeed } from '../store/sql.js';
import { fetchHealth, type ServerHealth } from './status.js';

/**
 * Change-feed channel of server lifecycle requests; the payload is a server id. A running
 * server listens on it and, when the id is its own and its row says `draining`, stops
 * taking connections, answers /health with 503 (the load balancer takes it out of
 * rotation), ends subscriptions with reason=deactivated (RFC 6665 4.1.3: the watcher
 * re-subscribes at once, through the load balancer, to another front-end), closes its
 * client connections so endpoints re-register elsewhere, and exits when empty.
 */
export const SERVERS_CHANNEL = 'parley_servers';

/**
 * Expected failures of `parley server drain`; the code is a key of the CLI catalogue
 * (src/cli/errors.ts), which gives the exit status and the next step.
 */
export type DrainErrorCode = 'SERVER_NOT_FOUND' | 'DRAIN_TIMEOUT';

export class DrainError extends Error {
  constructor(
    readonly code: DrainErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DrainError';
  }
}

export interface DrainResult {
  server: string;
  role: string;
  /** State before this command. */
  previousState: ServerState;
  /** `gone` when the server removed its row on exit. */
  state: ServerState | 'gone';
  /** --wait was given. */
  waited: boolean;
  /** The server has stopped (row gone or down): maintenance can start. */
  finished: boolean;
  elapsedMs: number;
}

export interface DrainProgress {
  state: ServerState | 'gone';
  elapsedMs: number;
  /** The server's own view while it drains, when it has a health URL and answers. */
  health?: ServerHealth;
}

export interface DrainOptions {
  wait?: boolean;
  /** How long --wait waits; default 10 minutes (long-lived SIP flows move slowly). */
  timeoutMs?: number;
  pollMs?: number;
  onProgress?: (p: DrainProgress) => void;
  /** Replaced in tests; default asks the server's health URL for progress. */
  fetchHealth?: (url: string, timeoutMs: number) => Promise<ServerHealth>;
}

export interface DrainSource {
  servers: ServerRepository;
  db: ChangeFeed;
}

export const DEFAULT_DRAIN_TIMEOUT_MS = 600_000;

/**
 * Planned maintenance of one server: mark it draining and tell it so over the change
 * feed. With `wait`, poll the servers table until the server has left (row gone or
 * `down`), or fail with DRAIN_TIMEOUT.
 */
export async function drainServer(
  source: DrainSource,
  id: string,
  opts: DrainOptions = {},
): Promise<DrainResult> {
  const started = Date.now();
  const before = await source.servers.get(id);
  if (!before) {
    const known = (await source.servers.list()).map((s) => s.id);
    throw new DrainError(
      'SERVER_NOT_FOUND',
      known.length
        ? `no server with id ${id}; known servers: ${known.join(', ')}`
        : `no server with id ${id}; no server is registered in this store`,
    );
  }
  const result: DrainResult = {
    server: id,
    role: before.role,
    previousState: before.state,
    state: before.state,
    waited: opts.wait ?? false,
    finished: before.state === 'down',
    elapsedMs: 0,
  };
  // A down server has nothing left to drain; marking it draining would only confuse status.
  if (before.state === 'down') return result;

  // The row changes before the notification goes out, so the server reads `draining`
  // when it looks. Re-draining a draining server sends the notification again: harmless,
  // and it helps a server that missed the first one while its listen connection was down.
  if (!(await source.servers.setState(id, 'draining'))) {
    return { ...result, state: 'gone', finished: true, elapsedMs: Date.now() - started };
  }
  await source.db.notify(SERVERS_CHANNEL, id);
  result.state = 'draining';
  if (!opts.wait) return { ...result, elapsedMs: Date.now() - started };

  const timeoutMs = opts.timeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  const pollMs = opts.pollMs ?? 1_000;
  const check = opts.fetchHealth ?? fetchHealth;
  const deadline = started + timeoutMs;
  for (;;) {
    const row = await source.servers.get(id);
    const state = row ? row.state : 'gone';
    const elapsedMs = Date.now() - started;
    if (state === 'gone' || state === 'down') {
      return { ...result, state, finished: true, elapsedMs };
    }
    if (opts.onProgress) {
      const health = row?.healthUrl ? await check(row.healthUrl, Math.min(pollMs, 2_000)) : undefined;
      opts.onProgress({ state, elapsedMs, ...(health?.reachable ? { health } : {}) });
    }
    if (Date.now() >= deadline) {
      throw new DrainError(
        'DRAIN_TIMEOUT',
        `server ${id} is still ${state} after ${Math.round(timeoutMs / 1000)} s`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.max(0, Math.min(pollMs, deadline - Date.now()))));
  }
}
