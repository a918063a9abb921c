import type { SipMessage } from '../sip/message.js';

/** Where a user of the domain lives, as this home's store records it. */
export type Residence =
  | { at: 'here' }
  | { at: 'home'; home: string; address: string }
  /**
   * Placed here by a wave that has not yet signed the user out of the home it leaves
   * (docs/migration.md, "What a run does"): its endpoints are still registered there.
   */
  | { at: 'arriving'; from: string; address: string }
  /** The store does not know the user (a legacy store never hears of the pool's users). */
  | { at: 'unknown' };

/** A user's row as routing reads it (HomeRepository.findResidence). */
export type ResidenceLookup = (
  aor: string,
) => Promise<
  { home: string | null; address?: string; arrivingFrom?: { home: string; address: string } } | undefined
>;

export interface UserHomesOptions {
  /** The home this server serves: a standard server's, or its pool's. */
  home: string;
  find: ResidenceLookup;
  /** SIP URI of a director: where requests for users the store does not know go (`homes.director`). */
  director?: string;
  /** Event packages served by the user's own home whatever the recipient (the contact list). */
  localEvents: readonly string[];
  now?: () => number;
}

/**
 * A residence is believed this long without a change notice: a PostgreSQL connection that
 * was lost and came back may have missed some (parley_users, parley_placement).
 */
const RESIDENCE_TTL_MS = 60_000;
const MAX_REMEMBERED = 100_000;

/**
 * Routing between homes in a mixed environment (docs/migration.md): a home serves requests
 * for the users it hosts and sends those for users of the domain who live elsewhere to their
 * home, or to the director when its store does not know them. Residences come from the store
 * and are remembered until the store announces a change of the user (a wave moving it, an
 * administrator, directory replication).
 */
export class UserHomes {
  private readonly known = new Map<string, { residence: Residence; at: number }>();
  /** Bumped by every change notice, so a lookup that raced one is not remembered. */
  private generation = 0;
  private readonly now: () => number;

  constructor(private readonly opts: UserHomesOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Does this request go where its recipient lives? A PUBLISH is always the sender's own
   * state (only the presentity publishes, at the home it signed in to), and the contact
   * list is kept by the home of its owner, who is the sender.
   */
  follows(request: SipMessage): boolean {
    const method = request.method;
    if (method === 'PUBLISH' || method === 'REGISTER' || method === 'ACK' || method === 'CANCEL')
      return false;
    if (method !== 'SUBSCRIBE') return true;
    const event = (request.get('event') ?? '').split(';')[0].trim().toLowerCase();
    return !this.opts.localEvents.includes(event);
  }

  /**
   * The next hop for a request to this user: null to serve it here. A request a trusted peer
   * sent (a director or another home that already routed it by placement) is never sent on to
   * the director: that could only bring it back. A request for an arriving user goes to the
   * home it leaves unless it has been through this server before (`returned`): that home
   * sent it back, having signed the user out already.
   */
  nextHop(aor: string, fromPeer: boolean, returned = false): string | null | Promise<string | null> {
    const decide = (r: Residence): string | null => {
      if (r.at === 'home') return r.address;
      if (r.at === 'arriving') return returned ? null : r.address;
      if (r.at === 'unknown' && !fromPeer) return this.opts.director ?? null;
      return null;
    };
    const residence = this.residence(aor);
    return residence instanceof Promise ? residence.then(decide) : decide(residence);
  }

  residence(aor: string): Residence | Promise<Residence> {
    // The store keeps addresses lower-case, and names them so in its notices.
    const key = aor.toLowerCase();
    const hit = this.known.get(key);
    if (hit && this.now() - hit.at < RESIDENCE_TTL_MS) return hit.residence;
    const generation = this.generation;
    return this.opts.find(key).then((row) => {
      const residence: Residence =
        row === undefined
          ? { at: 'unknown' }
          : row.home === this.opts.home && row.arrivingFrom
            ? { at: 'arriving', from: row.arrivingFrom.home, address: row.arrivingFrom.address }
            : row.home === null || row.home === this.opts.home || row.address === undefined
              ? { at: 'here' }
              : { at: 'home', home: row.home, address: row.address };
      // An arrival lasts until the wave signs the user out where it leaves, which this store
      // does not announce: asked again each time, for the few seconds it lasts.
      if (generation === this.generation && residence.at !== 'arriving') {
        // A flood of made-up names must not grow memory without bound.
        if (this.known.size >= MAX_REMEMBERED) this.known.clear();
        this.known.set(key, { residence, at: this.now() });
      }
      return residence;
    });
  }

  /** The store announced a change of this user (its placement among others). */
  changed(aor: string): void {
    this.generation++;
    this.known.delete(aor.toLowerCase());
  }
}
