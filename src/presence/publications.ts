import { PRESENCE_CHANNEL, type Publication, type PublicationRepository } from '../store/publications.js';
import type { ChangeFeed } from '../store/sql.js';

/** One endpoint's published presence (RFC 3903 event state), identified by its entity tag. */
export interface PublishedState {
  aor: string;
  etag: string;
  body: string;
  updatedAt: number;
  expiresAt: number;
}

/**
 * Where published presence lives. A standard server keeps it in memory; pool members share
 * it in PostgreSQL so a watcher on one front-end sees what an endpoint published on another.
 * Every change is announced to `onChange` listeners on every server of the store.
 */
export interface PublicationStore {
  get(aor: string, etag: string): Promise<PublishedState | undefined>;
  save(state: PublishedState): Promise<void>;
  /** Removes one state; with `onlyIfExpired`, only when it was not refreshed meanwhile. */
  remove(aor: string, etag: string, onlyIfExpired?: boolean): Promise<boolean>;
  removeAll(aor: string): Promise<number>;
  /** Every state of each of these AORs in one write (users who signed out at once). */
  removeAllOf(aors: readonly string[]): Promise<number>;
  list(aor: string): Promise<PublishedState[]>;
  /**
   * Removes every state published through this server (it is leaving: a drain, a stop), in
   * one write; every AOR whose state changed is announced. Returns those AORs.
   */
  removeOwn(): Promise<string[]>;
  onChange(listener: (aor: string) => void): Promise<() => Promise<void>>;
}

export class MemoryPublicationStore implements PublicationStore {
  private readonly byAor = new Map<string, Map<string, PublishedState>>();
  private readonly listeners = new Set<(aor: string) => void>();

  async get(aor: string, etag: string): Promise<PublishedState | undefined> {
    const state = this.byAor.get(aor)?.get(etag);
    return state && state.expiresAt > Date.now() ? state : undefined;
  }

  async save(state: PublishedState): Promise<void> {
    let map = this.byAor.get(state.aor);
    if (!map) {
      map = new Map();
      this.byAor.set(state.aor, map);
    }
    map.set(state.etag, { ...state });
    this.changed(state.aor);
  }

  async remove(aor: string, etag: string, onlyIfExpired = false): Promise<boolean> {
    const map = this.byAor.get(aor);
    const state = map?.get(etag);
    if (!map || !state || (onlyIfExpired && state.expiresAt > Date.now())) return false;
    map.delete(etag);
    if (map.size === 0) this.byAor.delete(aor);
    this.changed(aor);
    return true;
  }

  async removeAll(aor: string): Promise<number> {
    const n = this.byAor.get(aor)?.size ?? 0;
    if (n === 0) return 0;
    this.byAor.delete(aor);
    this.changed(aor);
    return n;
  }

  async removeAllOf(aors: readonly string[]): Promise<number> {
    let n = 0;
    for (const aor of aors) n += await this.removeAll(aor);
    return n;
  }

  async list(aor: string): Promise<PublishedState[]> {
    const now = Date.now();
    return [...(this.byAor.get(aor)?.values() ?? [])].filter((s) => s.expiresAt > now);
  }

  async removeOwn(): Promise<string[]> {
    const aors = [...this.byAor.keys()];
    this.byAor.clear();
    for (const aor of aors) this.changed(aor);
    return aors;
  }

  async onChange(listener: (aor: string) => void): Promise<() => Promise<void>> {
    this.listeners.add(listener);
    return async () => {
      this.listeners.delete(listener);
    };
  }

  private changed(aor: string): void {
    for (const l of this.listeners) queueMicrotask(() => l(aor));
  }
}

/**
 * Presence state in the shared store (store/publications.ts), for pool members: changes
 * are announced on the store's PRESENCE_CHANNEL, which every front-end listens to.
 */
export class SharedPublicationStore implements PublicationStore {
  /**
   * AORs that may have a state in the store: every AOR the change feed announced (a save or a
   * removal through any server), this server's own saves, and what the store held when this
   * server began to follow the feed. Users signed out together of whom none ever published (a
   * REGISTER storm's connections closing: 100,000 users) then cost no statement; in a worker
   * of a standard server they queued on the main process's single store session.
   */
  private readonly mayHave = new Set<string>();
  /** Set once the feed is followed and the store's AORs are in `mayHave`: until then, no filter. */
  private following = false;

  constructor(
    private readonly publications: PublicationRepository,
    private readonly feed: ChangeFeed,
    private readonly serverId: string,
    private readonly contentType = 'application/pidf+xml',
  ) {}

  async get(aor: string, etag: string): Promise<PublishedState | undefined> {
    const p = await this.publications.get(aor, etag);
    return p ? toState(p) : undefined;
  }

  save(state: PublishedState): Promise<void> {
    this.mayHave.add(state.aor);
    return this.publications.save({
      aor: state.aor,
      etag: state.etag,
      contentType: this.contentType,
      body: state.body,
      updatedAt: new Date(state.updatedAt),
      expiresAt: new Date(state.expiresAt),
      serverId: this.serverId,
    });
  }

  remove(aor: string, etag: string, onlyIfExpired = false): Promise<boolean> {
    return this.publications.remove(aor, etag, onlyIfExpired);
  }

  removeAll(aor: string): Promise<number> {
    return this.publications.removeAll(aor);
  }

  removeAllOf(aors: readonly string[]): Promise<number> {
    if (!this.following) return this.publications.removeAllOf(aors);
    // Forgotten before the delete: a save that commits after it is announced, and added again.
    const some = aors.filter((aor) => this.mayHave.delete(aor));
    return this.publications.removeAllOf(some);
  }

  async list(aor: string): Promise<PublishedState[]> {
    return (await this.publications.listForAor(aor)).map(toState);
  }

  removeOwn(): Promise<string[]> {
    return this.publications.removeForServer(this.serverId);
  }

  async onChange(listener: (aor: string) => void): Promise<() => Promise<void>> {
    if (this.following) return this.feed.listen(PRESENCE_CHANNEL, listener);
    // The first listener also keeps `mayHave`, from before the store is read.
    const stop = await this.feed.listen(PRESENCE_CHANNEL, (aor) => {
      this.mayHave.add(aor);
      listener(aor);
    });
    for (const aor of await this.publications.publishedAors()) this.mayHave.add(aor);
    this.following = true;
    return async () => {
      this.following = false;
      await stop();
    };
  }
}

function toState(p: Publication): PublishedState {
  return {
    aor: p.aor,
    etag: p.etag,
    body: p.body,
    updatedAt: p.updatedAt.getTime(),
    expiresAt: p.expiresAt.getTime(),
  };
}
