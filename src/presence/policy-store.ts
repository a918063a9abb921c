import type { ContactListRepository } from '../store/contact-lists.js';
import type { UserRepository } from '../store/users.js';
import type { AccessRule } from './authorize.js';
import type { PresencePolicy } from './server.js';

/** Presence authorization read from the store: the presentity's allow/block list (access_rules). */
export class StorePresencePolicy implements PresencePolicy {
  constructor(
    private readonly store: {
      users: Pick<UserRepository, 'getUser'>;
      contactLists: Pick<ContactListRepository, 'accessRules'>;
    },
    private readonly knownUser: (aor: string) => boolean | undefined,
  ) {}

  userExists(aor: string): boolean | Promise<boolean> {
    const known = this.knownUser(aor);
    if (known !== undefined) return known;
    return this.store.users.getUser(aor).then((u) => Boolean(u?.enabled));
  }

  accessRules(aor: string): Promise<AccessRule[]> {
    return this.store.contactLists.accessRules(aor);
  }
}
