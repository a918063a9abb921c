import { Departures } from '../migration/departures.js';
import { componentLogger } from '../ops/log.js';
import { CONTACTS_EVENT } from '../presence/server.js';
import { UserHomes } from '../proxy/home-routing.js';
import { AccountChanges, type SignOutReason } from '../registrar/account-changes.js';
import { CredentialCache } from '../registrar/credentials.js';
import type { LocationTable } from '../registrar/location.js';
import { ContactListRepository } from '../store/contact-lists.js';
import { HomeRepository, PLACEMENT_CHANNEL } from '../store/homes.js';
import { USERS_CHANNEL, UserRepository } from '../store/users.js';
import type { ServerBase } from './server-base.js';

/** What ending a user's sessions reaches beyond the location table: presence and connections. */
export interface SessionEnds {
  /** Ends the user's subscriptions; returns how many ended (PresenceServer.signOutUser). */
  endSubscriptions(aor: string, removed: boolean, ownReason: 'rejected' | 'deactivated'): Promise<number>;
  /** Watchers and presentities of the subscriptions held here. */
  subscriptionParties(): Iterable<string>;
  closeFlow(flowId: string): void;
}

/** The users of the home as the server keeps them: repositories and the caches that follow the store. */
export interface ServerAccounts {
  users: UserRepository;
  homes: HomeRepository;
  contactLists: ContactListRepository;
  credentials: CredentialCache;
  /** Set on a home (standard, or a front-end of a declared pool): users moving away from it. */
  departures: Departures | undefined;
  /** Set with `departures`: where users of other homes live, for routing to them. */
  userHomes: UserHomes | undefined;
}

/**
 * Loads the home's credentials and follows the store's changes to users and placement: a
 * disabled, removed or moved user's sessions end here at once (`ends`).
 */
export async function followAccounts(
  base: ServerBase,
  location: LocationTable,
  ends: SessionEnds,
): Promise<ServerAccounts> {
  const { config, db, domain, log, cleanups } = base;
  const users = new UserRepository(db);
  const homes = new HomeRepository(db);
  const contactLists = new ContactListRepository(db);
  const credentials = new CredentialCache({
    lookup: async (aor) => {
      const c = await users.getCredentials(aor, domain);
      return c ? { aor: c.aor, enabled: c.enabled, ha1Md5: c.ha1Md5, ha1Sha256: c.ha1Sha256 } : undefined;
    },
  });
  // Every user of the home in memory: no database round trip on the authentication path.
  credentials.preload(
    (await users.listCredentials(domain)).map((c) => ({
      aor: c.aor,
      enabled: c.enabled,
      ha1Md5: c.ha1Md5,
      ha1Sha256: c.ha1Sha256,
    })),
  );
  // An administrator's disable or removal (users commands, directory replication) ends the
  // user's session here at once; each front-end of a pool does the same for its own.
  const endSessions = async (aor: string, reason: SignOutReason) => {
    const { removed, idleFlows } = location.signOut(aor);
    // A moved user is told "deactivated" (subscribe again, and land in the new home).
    const subscriptions = await ends.endSubscriptions(
      aor,
      reason === 'removed',
      reason === 'moved' ? 'deactivated' : 'rejected',
    );
    // The endpoint's own connection closes once the final NOTIFYs have left, so it notices
    // now: it reconnects and its REGISTER is refused (or, moved, redirected).
    if (idleFlows.length > 0) {
      setTimeout(() => {
        for (const id of idleFlows) ends.closeFlow(id);
      }, 200).unref();
    }
    return { bindings: removed.length, subscriptions, connections: idleFlows.length };
  };
  const accounts = new AccountChanges({
    credentials,
    *activeUsers() {
      yield* location.aors();
      yield* ends.subscriptionParties();
    },
    userExists: async (aor) => (await users.getUser(aor)) !== undefined,
    signOut: endSessions,
    log: componentLogger(log, 'registrar'),
  });
  cleanups.push(await db.listen(USERS_CHANNEL, (aor) => accounts.onChange(aor)));
  // A wave migration moving a user away from this home (src/migration/departures.ts).
  const ownHome = config.role === 'standard' ? (config.home ?? domain) : config.home;
  const departures =
    ownHome && (config.role === 'standard' || config.role === 'frontend')
      ? new Departures({
          home: ownHome,
          load: () => homes.listPlacedElsewhere(ownHome),
          placement: async (aor) => {
            const h = await homes.getPlacement(aor);
            return h ? { home: h.name, address: h.address } : undefined;
          },
          signOut: (aor) => endSessions(aor, 'moved'),
          log: componentLogger(log, 'registrar'),
        })
      : undefined;
  if (departures) {
    await departures.start();
    cleanups.push(await db.listen(PLACEMENT_CHANNEL, (aor) => departures.onPlacement(aor)));
  }
  // Requests for users living in another home go there (docs/migration.md, the mixed environment).
  const userHomes = departures && ownHome ? await followUserHomes(base, homes, ownHome) : undefined;
  return { users, homes, contactLists, credentials, departures, userHomes };
}

/** Residences of the users for routing between homes, forgotten when the store announces a change. */
async function followUserHomes(base: ServerBase, homes: HomeRepository, home: string): Promise<UserHomes> {
  const userHomes = new UserHomes({
    home,
    find: (aor) => homes.findResidence(aor),
    director: base.config.homes.director,
    localEvents: [CONTACTS_EVENT],
  });
  for (const channel of [USERS_CHANNEL, PLACEMENT_CHANNEL])
    base.cleanups.push(await base.db.listen(channel, (aor) => userHomes.changed(aor)));
  return userHomes;
}
