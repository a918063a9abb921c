import type { Logger } from 'pino';
import type { Departure } from '../store/homes.js';

/** Where a user who left this home lives now. */
export interface NewHome {
  home: string;
  address: string;
}

export interface DeparturesOptions {
  /** The home this server serves (a standard server's, or its pool's). */
  home: string;
  /** Users the store places in other homes, read at start. */
  load(): Promise<Departure[]>;
  /** The user's home now, from the store. */
  placement(aor: string): Promise<NewHome | undefined>;
  /** Ends what the user has on this server; returns what was ended, for the log line. */
  signOut(aor: string): Promise<Record<string, number>>;
  log: Logger;
}

/**
 * The server side of a wave migration: users whose placement moved away from this home.
 * The placement feed (`parley_placement`, sent when a wave or its rollback moves a user)
 * names each one as it moves; the user is signed out here at once (subscriptions end with
 * `deactivated`, so clients subscribe again; bindings go and idle connections close, so
 * clients register again), and a REGISTER it still sends here is redirected to its new home
 * (`redirect`), which is where the director sends it too. The pace of sign-outs is the
 * pace of the wave's placement moves (signOutRate), so this acts on each one as it comes.
 */
export class Departures {
  private readonly away = new Map<string, NewHome>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly opts: DeparturesOptions) {}

  async start(): Promise<void> {
    for (const d of await this.opts.load()) this.away.set(d.aor, { home: d.home, address: d.address });
  }

  /** Users placed elsewhere, as this server knows them. */
  get size(): number {
    return this.away.size;
  }

  /** The new home of a user who left this one; undefined for users who live here. */
  redirect(aor: string): NewHome | undefined {
    return this.away.get(aor);
  }

  /** A payload of the placement feed; processed in order, one user at a time. */
  onPlacement(aor: string): void {
    if (!aor) return;
    this.queue = this.queue
      .then(() => this.check(aor))
      .catch((err: unknown) => this.opts.log.warn({ err, aor }, 'could not act on a placement change'));
  }

  /** Resolves once every placement change received so far has been acted on. */
  async settled(): Promise<void> {
    await this.queue;
  }

  private async check(aor: string): Promise<void> {
    const now = await this.opts.placement(aor);
    if (!now || now.home === this.opts.home) {
      // Back home (a rollback), or no longer placed anywhere: served here again.
      this.away.delete(aor);
      return;
    }
    const known = this.away.get(aor);
    this.away.set(aor, now);
    if (known?.home === now.home) return;
    const ended = await this.opts.signOut(aor);
    this.opts.log.info({ aor, home: now.home, ...ended }, 'user signed out: moved to another home');
  }
}
