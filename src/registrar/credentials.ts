/**
 * Credentials as the hot path needs them: the HA1s of one user in one realm. The cache
 * keeps every lookup off the database after the first; the server preloads the whole
 * domain at start and drops entries when an admin changes a user (store change feed).
 */
export interface UserCredentials {
  aor: string;
  enabled: boolean;
  ha1Md5: string;
  ha1Sha256: string;
}

export interface CredentialSource {
  lookup(aor: string): Promise<UserCredentials | undefined>;
}

/** A miss is remembered briefly, so a stream of REGISTERs for an unknown user costs one query a minute. */
const NEGATIVE_TTL_MS = 60_000;
const MAX_REMEMBERED_MISSES = 100_000;

export class CredentialCache {
  private readonly entries = new Map<string, UserCredentials>();
  private readonly misses = new Map<string, number>();

  constructor(
    private readonly source: CredentialSource,
    private readonly now: () => number = Date.now,
  ) {}

  /** Synchronous answer when known: credentials, null for a remembered miss, undefined when unknown. */
  peek(aor: string): UserCredentials | null | undefined {
    const hit = this.entries.get(aor);
    if (hit) return hit;
    const missAt = this.misses.get(aor);
    if (missAt !== undefined) {
      if (this.now() - missAt < NEGATIVE_TTL_MS) return null;
      this.misses.delete(aor);
    }
    return undefined;
  }

  async fetch(aor: string): Promise<UserCredentials | null> {
    const found = await this.source.lookup(aor);
    if (found) {
      this.entries.set(aor, found);
      this.misses.delete(aor);
      return found;
    }
    this.entries.delete(aor);
    // A flood of made-up usernames must not grow memory without bound.
    if (this.misses.size >= MAX_REMEMBERED_MISSES) this.misses.clear();
    this.misses.set(aor, this.now());
    return null;
  }

  preload(all: Iterable<UserCredentials>): number {
    let n = 0;
    for (const c of all) {
      this.entries.set(c.aor, c);
      n++;
    }
    return n;
  }

  invalidate(aor?: string): void {
    if (aor === undefined) {
      this.entries.clear();
      this.misses.clear();
      return;
    }
    this.entries.delete(aor);
    this.misses.delete(aor);
  }

  get size(): number {
    return this.entries.size;
  }
}
