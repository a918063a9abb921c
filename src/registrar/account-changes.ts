import type { Logger } from 'pino';
import type { CredentialCache } from './credentials.js';

/** Why a user may no longer be signed in here ('moved': a wave migration placed it in another home). */
export type SignOutReason = 'disabled' | 'removed' | 'no-credentials' | 'moved';

const MESSAGES: Record<SignOutReason, string> = {
  disabled: 'account disabled',
  removed: 'account removed',
  'no-credentials': 'credentials removed',
  moved: 'moved to another home',
};

export interface AccountChangesOptions {
  credentials: CredentialCache;
  /** Users with something live on this server: registered endpoints, subscriptions (either side). */
  activeUsers(): Iterable<string>;
  /** Does the account still exist? Tells a removed user from one whose secrets were removed. */
  userExists(aor: string): Promise<boolean>;
  /** Ends what the user has on this server; returns what was ended, for the log line. */
  signOut(aor: string, reason: SignOutReason): Promise<Record<string, number>>;
  log: Logger;
}

/**
 * Follows the store's users channel (`parley_users`: the AOR of a user whose account,
 * credentials or placement changed; '' for "any user may have changed"). Every change
 * drops the cached credentials, so the next request of that user is authenticated against
 * the store. A user who is live on this server is checked at once: disabled, removed or
 * left without digest secrets, it is signed out, so an administrator's decision takes
 * effect now and not at the endpoint's next refresh.
 *
 * Notifications are coalesced per turn of the event loop: a replication that changes
 * 100,000 users costs one pass over the users live here, not 100,000 lookups.
 */
export class AccountChanges {
  private pending = new Set<string>();
  private everyone = false;
  private scheduled = false;
  private passes: Promise<void> = Promise.resolve();

  constructor(private readonly opts: AccountChangesOptions) {}

  /** A payload of the users channel. */
  onChange(payload: string): void {
    if (payload) {
      this.opts.credentials.invalidate(payload);
      this.pending.add(payload);
    } else {
      this.opts.credentials.invalidate();
      this.everyone = true;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.passes = this.passes
        .then(() => this.pass())
        .catch((err: unknown) => this.opts.log.warn({ err }, 'could not act on account changes'));
    });
  }

  /** Resolves once every change received so far has been acted on (tests, shutdown). */
  async settled(): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    await this.passes;
  }

  private async pass(): Promise<void> {
    const changed = this.pending;
    const everyone = this.everyone;
    this.pending = new Set();
    this.everyone = false;
    const targets = new Set<string>();
    for (const aor of this.opts.activeUsers()) if (everyone || changed.has(aor)) targets.add(aor);
    for (const aor of targets) {
      try {
        const reason = await this.reasonToSignOut(aor);
        if (!reason) continue;
        const ended = await this.opts.signOut(aor, reason);
        this.opts.log.info({ aor, reason, ...ended }, `user signed out: ${MESSAGES[reason]}`);
      } catch (err) {
        // The store is unreachable, say: the next change or the endpoint's refresh tries again.
        this.opts.log.warn({ err, aor }, 'could not check a changed account');
      }
    }
  }

  private async reasonToSignOut(aor: string): Promise<SignOutReason | undefined> {
    const credentials = await this.opts.credentials.fetch(aor);
    if (credentials) return credentials.enabled ? undefined : 'disabled';
    return (await this.opts.userExists(aor)) ? 'no-credentials' : 'removed';
  }
}
