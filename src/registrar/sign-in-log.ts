import type { Logger } from 'pino';
import type { Binding, BindingRemoval, LocationTable } from './location.js';

/**
 * The lines an administrator reads to answer "is bob signed in, from where, and why not any
 * more?" (docs/logging.md): one `sign_in` line per new endpoint and one `sign_out` line per
 * endpoint that goes, with its reason, at info. Refreshes are debug: a client refreshing
 * every few minutes would bury the rest.
 */
export class SignInLog {
  constructor(private readonly log: Logger) {}

  /** Logs every endpoint that leaves the table, whatever removed it (RFC 3261 10.3, expiry, a lost connection, an administrator). */
  watch(location: LocationTable): void {
    location.on('changed', (binding, removed, why) => {
      // A contact replaced by the same instance's new one is the endpoint staying, not leaving.
      if (removed && why !== undefined && why !== 'replaced') this.signedOut(binding, why);
    });
  }

  /** A REGISTER added (`isNew`) or refreshed a binding. */
  registered(binding: Binding, isNew: boolean, now: number): void {
    const level = isNew ? 'info' : 'debug';
    if (!this.log.isLevelEnabled(level)) return;
    this.log[level](
      {
        event: isNew ? 'sign_in' : 'refresh',
        user: binding.aor,
        contact: binding.contact,
        transport: binding.source?.transport,
        address: binding.source?.address,
        userAgent: binding.userAgent,
        expires: Math.round((binding.expiresAt - now) / 1000),
      },
      isNew ? 'signed in' : 'registration refreshed',
    );
  }

  private signedOut(binding: Binding, reason: BindingRemoval): void {
    if (!this.log.isLevelEnabled('info')) return;
    this.log.info(
      {
        event: 'sign_out',
        user: binding.aor,
        reason,
        contact: binding.contact,
        transport: binding.source?.transport,
        address: binding.source?.address,
        userAgent: binding.userAgent,
      },
      'signed out',
    );
  }
}
