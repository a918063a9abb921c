import type { Logger } from 'pino';
import {
  REGISTRATIONS_CHANNEL,
  type RegistrationBinding,
  type RegistrationRepository,
  registrationPayloadAors,
} from '../store/registrations.js';
import type { ChangeFeed } from '../store/sql.js';
import { forgetOldest } from '../transport/limits.js';
import type { Binding, LocationTable } from './location.js';

/** Where a remote lookup was answered from (parley_pool_binding_lookups_total). */
export type RemoteLookupSource = 'cache' | 'store';

export interface RemoteBindingCacheOptions {
  /** AORs whose answer is kept; the oldest entry goes past it. */
  maxEntries?: number;
  onLookup?: (source: RemoteLookupSource) => void;
  now?: () => number;
}

interface Fetch {
  promise: Promise<Binding[]>;
  /** A change to the AOR was announced while the query ran: its answer may predate it. */
  stale: boolean;
}

/**
 * The bindings other front-ends of the pool hold, per AOR, kept current by the store's
 * registrations channel (PostgreSQL LISTEN/NOTIFY): an AOR is asked of the store once, and
 * again only after a front-end announced a change to it, so routing a MESSAGE to a user
 * signed in elsewhere costs no query. AORs are filled on first use rather than all loaded
 * at start: a front-end only needs the users its own senders reach, and a pool of 100,000
 * users would otherwise hold every other front-end's bindings in each process.
 *
 * The cache is trusted only while the LISTEN connection is up: when it drops, every
 * lookup goes to the store (notifications sent meanwhile are lost) until it is back, and
 * then the cache starts empty. Expired bindings are left out at read time, as the store's
 * query does.
 */
export class RemoteBindingCache {
  private readonly entries = new Map<string, Binding[]>();
  private readonly fetches = new Map<string, Fetch>();
  private live = false;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(
    private readonly registrations: Pick<RegistrationRepository, 'listBindings'>,
    private readonly serverId: string,
    private readonly opts: RemoteBindingCacheOptions = {},
  ) {
    this.maxEntries = opts.maxEntries ?? 200_000;
    this.now = opts.now ?? Date.now;
  }

  /** Follows the feed; resolves once LISTEN is in place (the cache is used from then on). */
  async follow(feed: ChangeFeed): Promise<() => Promise<void>> {
    const stop = await feed.listen(REGISTRATIONS_CHANNEL, (payload) => this.changed(payload), {
      lost: () => {
        this.live = false;
        this.clear();
      },
      resumed: () => {
        this.clear();
        this.live = true;
      },
    });
    this.live = true;
    return async () => {
      this.live = false;
      this.clear();
      await stop();
    };
  }

  /** Bindings of the AOR held by other front-ends, unexpired: from memory when known. */
  lookup(aor: string): Binding[] | Promise<Binding[]> {
    const cached = this.live ? this.entries.get(aor) : undefined;
    if (cached) {
      this.opts.onLookup?.('cache');
      return this.unexpired(aor, cached);
    }
    const pending = this.fetches.get(aor);
    if (pending) return pending.promise;
    this.opts.onLookup?.('store');
    const fetch: Fetch = { promise: undefined as unknown as Promise<Binding[]>, stale: !this.live };
    fetch.promise = this.registrations.listBindings(aor).then(
      (rows) => {
        this.fetches.delete(aor);
        const bindings = rows.filter((r) => r.serverId !== this.serverId).map(toBinding);
        if (!fetch.stale && this.live) this.remember(aor, bindings);
        return bindings;
      },
      (err: unknown) => {
        this.fetches.delete(aor);
        throw err;
      },
    );
    this.fetches.set(aor, fetch);
    return fetch.promise;
  }

  /** A payload of the registrations channel. */
  changed(payload: string): void {
    const aors = registrationPayloadAors(payload);
    if (!aors) {
      this.clear();
      return;
    }
    for (const aor of aors) {
      this.entries.delete(aor);
      const fetch = this.fetches.get(aor);
      if (fetch) fetch.stale = true;
    }
  }

  get size(): number {
    return this.entries.size;
  }

  private clear(): void {
    this.entries.clear();
    for (const fetch of this.fetches.values()) fetch.stale = true;
  }

  private remember(aor: string, bindings: Binding[]): void {
    this.entries.set(aor, bindings);
    forgetOldest(this.entries, this.maxEntries);
  }

  private unexpired(aor: string, bindings: Binding[]): Binding[] {
    const now = this.now();
    for (const b of bindings) {
      if (b.expiresAt <= now) {
        const live = bindings.filter((x) => x.expiresAt > now);
        this.entries.set(aor, live);
        return live;
      }
    }
    return bindings;
  }
}

/**
 * Mirrors a front-end's bindings into the pool's shared registrations table, so every
 * front-end can find every endpoint. Writes are batched (one multi-row statement per tick)
 * to keep the database off the REGISTER path; a binding reached only over this server's
 * connection is published with a Path through this server (its flow route), so another
 * front-end relays requests for it here (RFC 5626 5.3 flow tokens, RFC 3327 Path).
 */
export class LocationMirror {
  private readonly dirty = new Map<string, Binding | null>();
  private flushing?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private readonly others: RemoteBindingCache;
  private unfollow?: () => Promise<void>;

  constructor(
    private readonly location: LocationTable,
    private readonly registrations: RegistrationRepository,
    private readonly serverId: string,
    private readonly flowRoute: (flowId: string) => string,
    private readonly log: Logger,
    private readonly intervalMs = 100,
    cache: RemoteBindingCacheOptions = {},
  ) {
    location.on('changed', (b: Binding, removed: boolean) => this.mark(b, removed));
    this.others = new RemoteBindingCache(registrations, serverId, cache);
  }

  /**
   * Starts the write-behind and, given the store's change feed, the cache of the other
   * front-ends' bindings (without a feed every lookup asks the store).
   */
  async start(feed?: ChangeFeed): Promise<void> {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
    if (feed) this.unfollow = await this.others.follow(feed);
  }

  /** Bindings of the AOR held by other front-ends (unexpired), as routable bindings. */
  remote(aor: string): Binding[] | Promise<Binding[]> {
    return this.others.lookup(aor);
  }

  /**
   * Of these AORs, the ones signed in nowhere in the pool: not here (the local table), nor
   * through another front-end (one query to the store for all of them).
   */
  async signedOutEverywhere(aors: readonly string[]): Promise<string[]> {
    const here = aors.filter((aor) => this.location.lookup(aor).length === 0);
    if (here.length === 0) return here;
    const elsewhere = new Set(await this.registrations.signedInElsewhere(here, this.serverId));
    return here.filter((aor) => !elsewhere.has(aor));
  }

  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.dirty.size === 0) return;
    const batch = [...this.dirty.entries()];
    this.dirty.clear();
    this.flushing = this.write(batch)
      .catch((err: unknown) => {
        this.log.warn({ err }, 'could not mirror registrations; retrying');
        for (const [k, v] of batch) if (!this.dirty.has(k)) this.dirty.set(k, v);
      })
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  /** Shutdown: this server's bindings leave the pool's table. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const unfollow = this.unfollow;
    this.unfollow = undefined;
    await unfollow?.();
    await this.flush();
    await this.registrations.removeForServer(this.serverId);
  }

  private mark(b: Binding, removed: boolean): void {
    this.dirty.set(`${b.aor}\n${b.contact}`, removed ? null : b);
  }

  private async write(batch: Array<[string, Binding | null]>): Promise<void> {
    const upserts: Binding[] = [];
    const removals: Array<{ aor: string; contact: string }> = [];
    for (const [key, b] of batch) {
      if (b) upserts.push(b);
      else {
        const [aor, contact] = key.split('\n');
        removals.push({ aor, contact });
      }
    }
    // One statement for every removal of the tick: a connection of 50,000 users closing was
    // 50,000 statements in a row, and every lookup of the pool queued behind them.
    if (removals.length > 0) await this.registrations.removeBindings(removals, this.serverId);
    if (upserts.length === 0) return;
    await this.registrations.upsertBindings(
      upserts.map((b) => ({
        aor: b.aor,
        contact: b.contact,
        instanceId: b.instanceId ?? null,
        callId: b.callId,
        cseq: b.cseq,
        expiresAt: new Date(b.expiresAt),
        q: b.q,
        userAgent: b.userAgent,
        serverId: this.serverId,
        flowId: b.flowId ?? '',
        path: [...(b.flowId ? [this.flowRoute(b.flowId)] : []), ...b.path].join(',') || null,
      })),
    );
  }
}

function toBinding(r: RegistrationBinding): Binding {
  return {
    aor: r.aor,
    contact: r.contact,
    instanceId: r.instanceId ?? undefined,
    callId: r.callId,
    cseq: r.cseq,
    expiresAt: new Date(r.expiresAt).getTime(),
    q: r.q,
    userAgent: r.userAgent,
    serverId: r.serverId,
    path: r.path ? splitPath(r.path) : [],
    flowOnly: false,
  };
}

/** Path values were joined with commas; commas inside <...> belong to a URI. */
function splitPath(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '<') depth++;
    else if (c === '>') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  const last = text.slice(start).trim();
  if (last) out.push(last);
  return out;
}
