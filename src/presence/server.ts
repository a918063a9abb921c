import type { Logger } from 'pino';
import type { AuthenticatedParty, RequestHandler } from '../proxy/core.js';
import type { LocalIdentity } from '../proxy/local.js';
import { createBranch, createTag } from '../sip/ids.js';
import { type SipHeader, SipMessage } from '../sip/message.js';
import { formatNameAddr, parseNameAddr } from '../sip/nameaddr.js';
import { uriAor } from '../sip/uri.js';
import type { ClientTransactionHandler, ServerTransaction, TransactionLayer } from '../transaction/layer.js';
import { cancelTimer, type TimerHandle, type TimerWheel } from '../transaction/timers.js';
import type { Flow } from '../transport/flow.js';
import { type AccessRule, authorizeWatcher } from './authorize.js';
import { composePresence } from './compose.js';
import { closedPresence, PIDF_CONTENT_TYPE, parsePidf } from './pidf.js';
import type { PublicationStore, PublishedState } from './publications.js';

export const PRESENCE_EVENT = 'presence';
/** Parley's event package for the server-stored contact list (docs/contact-list-event-package.md). */
export const CONTACTS_EVENT = 'parley-contacts';

/** What the presence server needs from the store, kept narrow so the server is testable. */
export interface PresencePolicy {
  userExists(aor: string): boolean | Promise<boolean>;
  accessRules(aor: string): Promise<AccessRule[]>;
}

/** The contact list behind the `parley-contacts` package: read and replaced as whole XML documents. */
export interface ContactListAccess {
  contentType: string;
  read(aor: string): Promise<{ body: string; version: number }>;
  replace(
    aor: string,
    body: string,
  ): Promise<{ ok: true; version: number } | { ok: false; reason: string; limit?: boolean }>;
}

export interface PresenceServerOptions {
  domain: string;
  local: LocalIdentity;
  transactions: TransactionLayer;
  timers: TimerWheel;
  policy: PresencePolicy;
  contactLists?: ContactListAccess;
  /** Reaches a watcher whose SUBSCRIBE flow has gone (by its route set or remote target). */
  resolveUri(uri: string): Promise<Flow>;
  flowById(id: string): Flow | undefined;
  log: Logger;
  maxExpires: number;
  defaultExpires: number;
  minExpires?: number;
  allowSameDomain: boolean;
  /**
   * The server's floor under RFC 6446 rate control, in ms: a watcher gets at most one NOTIFY
   * per interval, whatever it asked for (0 or absent: only what the watcher asks).
   */
  minNotifyIntervalMs?: number;
  /** Subscriptions one watcher (user) may hold here at once; the next is refused (403). */
  maxSubscriptionsPerUser?: number;
  /** Subscriptions one endpoint (a device: the watcher and its Contact) may hold at once. */
  maxSubscriptionsPerEndpoint?: number;
  /**
   * How long a subscription's dialog outlives the watcher's connection (registrar's
   * connectionGraceSeconds): a refresh over a new connection within it takes the dialog back.
   * Meanwhile it is neither notified nor counted against the limits.
   */
  connectionGraceMs?: number;
  onNotify?: () => void;
  /** A SUBSCRIBE was refused by a subscription limit. */
  onLimit?: (limit: string) => void;
  /** Published state: in memory on a standard server, shared in the store in a pool. */
  publications: PublicationStore;
}

type SubscriptionState = 'active' | 'pending' | 'terminated';

interface Subscription {
  id: string;
  event: string;
  eventId?: string;
  presentity: string;
  watcher: string;
  callId: string;
  localTag: string;
  remoteTag: string;
  /** The watcher's From header value, which becomes our To. */
  remoteNameAddr: string;
  remoteTarget: string;
  routeSet: string[];
  localCseq: number;
  flowId: string;
  expiresAt: number;
  state: SubscriptionState;
  /** Block politely: the watcher sees the presentity offline (RFC 3856 5.1.1 "polite blocking"). */
  polite: boolean;
  timer?: TimerHandle;
  /** The NOTIFY headers that stay the same for this dialog over one flow, built once. */
  template?: NotifyTemplate;
  /**
   * The watcher's endpoint it counts against (maxSubscriptionsPerEndpoint): the user and the
   * device's Contact as first subscribed. Not the connection: a server peer (the edge, a
   * director) carries many users' subscriptions over one.
   */
  endpoint: string;
  /** RFC 6446 min-interval in force, ms: the watcher's, raised to the server's floor. */
  minIntervalMs: number;
  /** What the watcher asked for (RFC 6446 min-interval), echoed in Subscription-State. */
  askedInterval?: number;
  lastNotifyAt: number;
  /** A state change held back by the interval, sent when it ends (with the state then). */
  throttled?: TimerHandle;
  /** Handles the answers to its NOTIFYs. */
  answers?: ClientTransactionHandler;
  /**
   * The connection the watcher subscribed over directly (TCP, TLS, WebSocket; no proxy's
   * Record-Route in between): the subscription lives as long as it, as a binding does.
   */
  connection?: string;
}

/** Headers of a subscription's NOTIFYs that do not change from one NOTIFY to the next. */
interface NotifyTemplate {
  flowId: string;
  routes: SipHeader[];
  from: SipHeader;
  to: SipHeader;
  callId: SipHeader;
  contact: SipHeader;
  event: SipHeader;
}

/** A presentity's composed document, shared by every NOTIFY until its state changes. */
interface ComposedState {
  body: Buffer;
  /** When the earliest publication composed into it expires: recomposed after that. */
  validUntil: number;
}

const MAX_FORWARDS: SipHeader = Object.freeze({ name: 'max-forwards', value: '70' });
const PIDF_TYPE_HEADER: SipHeader = Object.freeze({ name: 'content-type', value: PIDF_CONTENT_TYPE });
const EMPTY = Buffer.alloc(0);

/**
 * Presence agent and event state compositor: PUBLISH (RFC 3903), SUBSCRIBE/NOTIFY (RFC 6665,
 * RFC 3856) for `presence`, and Parley's `parley-contacts` package.
 */
export class PresenceServer implements RequestHandler {
  private readonly expiryTimers = new Map<string, TimerHandle>();
  /** etag -> the connection its latest PUBLISH here came over, and the expiry it was given. */
  private readonly publishedOver = new Map<string, { aor: string; flowId: string; expiresAt: number }>();
  private unlisten?: () => Promise<void>;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly byPresentity = new Map<string, Set<Subscription>>();
  private readonly minExpires: number;
  /** presentity -> its composed state: composed once per change, not once per watcher. */
  private readonly composed = new Map<string, ComposedState>();
  /** presentity -> changes seen; a composition started before a change is not cached. */
  private readonly generations = new Map<string, number>();
  /** watcher -> subscriptions it holds here; endpoint (flow id) -> the same. */
  private readonly perWatcher = new Map<string, number>();
  private readonly perEndpoint = new Map<string, number>();
  /** connection id -> the subscriptions that live and die with it. */
  private readonly byConnection = new Map<string, Set<Subscription>>();
  /** Subscriptions whose connection closed, for the grace: dialog key -> subscription. */
  private readonly orphans = new Map<string, Subscription>();

  constructor(private readonly opts: PresenceServerOptions) {
    this.minExpires = opts.minExpires ?? 60;
  }

  handle(request: SipMessage, st: ServerTransaction, party: AuthenticatedParty): void {
    const work =
      request.method === 'PUBLISH'
        ? this.onPublish(request, st, party)
        : this.onSubscribe(request, st, party);
    work.catch((err: Error) => {
      this.opts.log.error({ err, method: request.method }, 'presence request failed');
      if (!st.isFinal) st.reply(500, 'Server Internal Error');
    });
  }

  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  // RFC 3903 section 6
  private async onPublish(
    request: SipMessage,
    st: ServerTransaction,
    party: AuthenticatedParty,
  ): Promise<void> {
    const event = eventPackage(request);
    if (event.name !== PRESENCE_EVENT && event.name !== CONTACTS_EVENT) {
      st.reply(489, 'Bad Event', {
        headers: [{ name: 'allow-events', value: `${PRESENCE_EVENT}, ${CONTACTS_EVENT}` }],
      });
      return;
    }
    const ruri = request.requestUri;
    const aor = ruri ? uriAor(ruri) : '';
    if (!party.aor || party.aor !== aor) {
      st.reply(403, 'Forbidden - only the presentity may publish its state');
      return;
    }
    if (event.name === CONTACTS_EVENT) {
      await this.publishContactList(request, st, aor);
      return;
    }
    const expires = this.grantedExpires(request, st);
    if (expires === undefined) return;
    const ifMatch = request.get('sip-if-match');
    const hasBody = request.body.length > 0;
    const store = this.opts.publications;
    if (ifMatch !== undefined) {
      const existing = await store.get(aor, ifMatch);
      if (!existing) {
        st.reply(412, 'Conditional Request Failed');
        return;
      }
      if (expires === 0) {
        cancelTimer(this.expiryTimers.get(existing.etag));
        this.expiryTimers.delete(existing.etag);
        this.publishedOver.delete(existing.etag);
        await store.remove(aor, existing.etag);
        st.reply(200, undefined, { headers: [{ name: 'expires', value: '0' }] });
        return;
      }
      let body = existing.body;
      if (hasBody) {
        const valid = this.validPidf(request, st);
        if (valid === undefined) return;
        body = valid;
      }
      await this.savePublication(
        { ...existing, body, updatedAt: hasBody ? Date.now() : existing.updatedAt },
        expires,
        st.flow,
      );
      st.reply(200, undefined, {
        headers: [
          { name: 'sip-etag', value: existing.etag },
          { name: 'expires', value: String(expires) },
        ],
      });
      return;
    }
    if (!hasBody) {
      st.reply(400, 'Bad Request - initial PUBLISH without a body');
      return;
    }
    if (expires === 0) {
      st.reply(400, 'Bad Request - initial PUBLISH with Expires: 0');
      return;
    }
    const body = this.validPidf(request, st);
    if (body === undefined) return;
    const etag = createTag();
    await this.savePublication({ aor, etag, body, updatedAt: Date.now(), expiresAt: 0 }, expires, st.flow);
    st.reply(200, undefined, {
      headers: [
        { name: 'sip-etag', value: etag },
        { name: 'expires', value: String(expires) },
      ],
    });
  }

  /** A NOTIFY that fails (the store is unreachable, say) is logged; it never takes the server down. */
  private notifySafely(work: Promise<void>): void {
    work.catch((err: unknown) => this.opts.log.warn({ err }, 'NOTIFY failed'));
  }

  /** RFC 3903 5 / RFC 6665 4.2.1.1: the duration granted, or undefined after a 423. */
  private grantedExpires(request: SipMessage, st: ServerTransaction): number | undefined {
    const asked = request.expires ?? this.opts.defaultExpires;
    if (asked !== 0 && asked < this.minExpires) {
      st.reply(423, 'Interval Too Brief', {
        headers: [{ name: 'min-expires', value: String(this.minExpires) }],
      });
      return undefined;
    }
    return Math.min(asked, this.opts.maxExpires);
  }

  private decide(watcher: string, presentity: string, rules: AccessRule[]) {
    return authorizeWatcher({
      watcher,
      presentity,
      rules,
      sameDomainDefault: this.opts.allowSameDomain,
      organisationDomains: [this.opts.domain],
    });
  }

  private validPidf(request: SipMessage, st: ServerTransaction): string | undefined {
    const type = (request.contentType ?? '').split(';')[0].trim().toLowerCase();
    if (type !== PIDF_CONTENT_TYPE) {
      st.reply(415, 'Unsupported Media Type', { headers: [{ name: 'accept', value: PIDF_CONTENT_TYPE }] });
      return undefined;
    }
    const body = request.body.toString('utf8');
    const parsed = parsePidf(body);
    if (!parsed.ok) {
      st.reply(400, `Bad Request - ${parsed.reason}`);
      return undefined;
    }
    return body;
  }

  /** Stores the state and arms its expiry here; the store's change feed tells the watchers. */
  private async savePublication(state: PublishedState, expires: number, flow: Flow): Promise<void> {
    cancelTimer(this.expiryTimers.get(state.etag));
    const expiresAt = Date.now() + expires * 1000;
    this.publishedOver.set(state.etag, { aor: state.aor, flowId: flow.id, expiresAt });
    await this.opts.publications.save({ ...state, expiresAt });
    this.expiryTimers.set(
      state.etag,
      this.opts.timers.schedule(expires * 1000 + 50, () => {
        this.expiryTimers.delete(state.etag);
        this.publishedOver.delete(state.etag);
        // Only if not refreshed meanwhile, possibly through another front-end.
        void this.opts.publications.remove(state.aor, state.etag, true).catch(() => undefined);
      }),
    );
  }

  /**
   * The endpoint behind a connection is gone (its bindings went with it): what it published
   * over that connection goes too, so its watchers see only its other endpoints. A state
   * refreshed since over another connection, here or on another front-end, stays.
   */
  async connectionLost(flowId: string): Promise<void> {
    const store = this.opts.publications;
    for (const [etag, over] of [...this.publishedOver]) {
      if (over.flowId !== flowId) continue;
      this.publishedOver.delete(etag);
      const current = await store.get(over.aor, etag);
      if (!current || current.expiresAt !== over.expiresAt) continue;
      cancelTimer(this.expiryTimers.get(etag));
      this.expiryTimers.delete(etag);
      await store.remove(over.aor, etag);
    }
  }

  /**
   * One endpoint was refused at its refresh (client version rules): the subscriptions it holds
   * over that flow end with "rejected" (RFC 6665 4.1.3: do not retry) and what it published
   * over it goes, now rather than at expiry. The user's other endpoints keep theirs.
   */
  async endpointRefused(flowId: string): Promise<number> {
    const ending = [...this.subscriptions.values()].filter((sub) => sub.flowId === flowId);
    await Promise.allSettled(ending.map((sub) => this.terminate(sub, 'rejected')));
    await this.connectionLost(flowId);
    return ending.length;
  }

  /** An endpoint reconnected: what it published over the old connection now lives with the new one. */
  connectionMoved(from: string, to: string): void {
    for (const over of this.publishedOver.values()) if (over.flowId === from) over.flowId = to;
  }

  /**
   * This server is leaving (a drain, a stop): what its endpoints published goes in one write,
   * so their watchers, here or on other front-ends, see them offline now rather than when
   * the publications expire. They publish again wherever they reconnect.
   */
  async dropOwnPublications(): Promise<number> {
    for (const timer of this.expiryTimers.values()) cancelTimer(timer);
    this.expiryTimers.clear();
    this.publishedOver.clear();
    return (await this.opts.publications.removeOwn()).length;
  }

  /** Users with no registered endpoint left are offline, whatever their endpoints last published. */
  async usersSignedOut(aors: readonly string[]): Promise<void> {
    await this.opts.publications.removeAllOf(aors);
  }

  /** The subscriptions held here, for `parley server sessions`: who watches what, in which event package, until when. */
  *subscriptionsHeld(): IterableIterator<{
    watcher: string;
    presentity: string;
    event: string;
    state: SubscriptionState;
    expiresAt: number;
  }> {
    for (const sub of this.subscriptions.values()) {
      yield {
        watcher: sub.watcher,
        presentity: sub.presentity,
        event: sub.event,
        state: sub.state,
        expiresAt: sub.expiresAt,
      };
    }
  }

  /** Watchers and presentities of the subscriptions held here (repeats included). */
  *subscriptionParties(): IterableIterator<string> {
    for (const sub of this.subscriptions.values()) {
      yield sub.watcher;
      yield sub.presentity;
    }
  }

  /**
   * An administrator disabled or removed the user. Its own subscriptions end with
   * "rejected" (RFC 6665 4.1.3: authorization withdrawn, do not retry; "deactivated" would
   * send the client straight back into a 403). Its published state goes, so its watchers
   * see it offline through the change feed; a removed user's watchers are told with
   * "noresource" that there is nothing left to watch. Returns how many subscriptions ended.
   * A user who moved to another home (wave migration) is told "deactivated" instead: its
   * client subscribes again at once, and reaches the new home; so are its watchers here,
   * whose new subscriptions this home now sends to the presentity's new home.
   */
  async signOutUser(
    aor: string,
    removed: boolean,
    ownReason: 'rejected' | 'deactivated' = 'rejected',
  ): Promise<number> {
    const ending: Array<[Subscription, 'rejected' | 'deactivated' | 'noresource']> = [];
    for (const sub of this.subscriptions.values()) {
      if (sub.watcher === aor) ending.push([sub, ownReason]);
      else if (removed && sub.presentity === aor) ending.push([sub, 'noresource']);
      else if (ownReason === 'deactivated' && sub.presentity === aor) ending.push([sub, 'deactivated']);
    }
    await Promise.allSettled(ending.map(([sub, reason]) => this.terminate(sub, reason)));
    await this.opts.publications.removeAll(aor);
    return ending.length;
  }

  async composedState(aor: string): Promise<string> {
    const state = this.composedNow(aor) ?? (await this.compose(aor));
    return state.body.toString('utf8');
  }

  /** The cached composition when it is still current. */
  private composedNow(aor: string): ComposedState | undefined {
    const cached = this.composed.get(aor);
    if (cached && cached.validUntil > Date.now()) return cached;
    return undefined;
  }

  /** Composes the presentity's publications (RFC 3903 4.4 event state compositor) and caches it. */
  private async compose(aor: string): Promise<ComposedState> {
    const generation = this.generations.get(aor) ?? 0;
    const pubs = await this.opts.publications.list(aor);
    let validUntil = Number.POSITIVE_INFINITY;
    for (const p of pubs) validUntil = Math.min(validUntil, p.expiresAt);
    const text =
      pubs.length === 0
        ? closedPresence(`sip:${aor}`)
        : composePresence(
            `sip:${aor}`,
            pubs.map((p) => ({ etag: p.etag, body: p.body, updatedAt: new Date(p.updatedAt) })),
          );
    const state: ComposedState = { body: Buffer.from(text), validUntil };
    // Only presentities someone watches here are kept, and only if nothing changed meanwhile.
    if (this.byPresentity.has(aor) && (this.generations.get(aor) ?? 0) === generation)
      this.composed.set(aor, state);
    return state;
  }

  /** The presentity's state changed (the change feed): the cached composition is stale. */
  private stateChanged(aor: string): void {
    this.composed.delete(aor);
    if (this.byPresentity.has(aor)) this.generations.set(aor, (this.generations.get(aor) ?? 0) + 1);
  }

  /** Starts following the publication store's change feed (all servers of a pool share it). */
  async start(): Promise<void> {
    this.unlisten = await this.opts.publications.onChange((aor) => {
      this.stateChanged(aor);
      this.notifyPresentity(aor);
    });
  }

  private async publishContactList(request: SipMessage, st: ServerTransaction, aor: string): Promise<void> {
    const lists = this.opts.contactLists;
    if (!lists) {
      st.reply(489, 'Bad Event');
      return;
    }
    const type = (request.contentType ?? '').split(';')[0].trim().toLowerCase();
    if (type !== lists.contentType) {
      st.reply(415, 'Unsupported Media Type', { headers: [{ name: 'accept', value: lists.contentType }] });
      return;
    }
    // SIP-If-Match carries the list version the client edited: refuse lost updates (RFC 3903 4.4 semantics).
    const ifMatch = request.get('sip-if-match');
    if (ifMatch !== undefined) {
      const current = await lists.read(aor);
      if (String(current.version) !== ifMatch) {
        st.reply(412, 'Conditional Request Failed');
        return;
      }
    }
    const result = await lists.replace(aor, request.body.toString('utf8'));
    if (!result.ok && result.limit) {
      // A list over the deployment's limit is refused like a subscription over it (refuseOverLimit).
      st.reply(403, 'Forbidden - contact list limit reached', {
        headers: [
          { name: 'warning', value: `399 ${this.opts.domain} "${result.reason.replace(/"/g, "'")}"` },
        ],
      });
      return;
    }
    if (!result.ok) {
      st.reply(400, `Bad Request - ${result.reason}`.slice(0, 200));
      return;
    }
    // The store's change feed brings the new list to every device (contactListChanged).
    st.reply(200, undefined, {
      headers: [
        { name: 'sip-etag', value: String(result.version) },
        { name: 'expires', value: '0' },
      ],
    });
  }

  /**
   * The user's contact list changed: every device watching it gets the new list (it roams),
   * and the user's watchers are authorized again against its allow/block rules.
   */
  async contactListChanged(aor: string): Promise<void> {
    const subs = this.byPresentity.get(aor);
    if (!subs) return;
    const rules = await this.opts.policy.accessRules(aor);
    for (const sub of [...subs]) {
      if (sub.event === CONTACTS_EVENT) {
        if (sub.state === 'active') await this.sendNotify(sub);
        continue;
      }
      const decision = this.decide(sub.watcher, aor, rules);
      if (decision === 'block') {
        await this.terminate(sub, 'rejected');
        continue;
      }
      const state: SubscriptionState = decision === 'pending' ? 'pending' : 'active';
      const polite = decision === 'polite-block';
      if (state !== sub.state || polite !== sub.polite) {
        sub.state = state;
        sub.polite = polite;
        await this.sendNotify(sub);
      }
    }
  }

  // RFC 6665 4.2.1 and RFC 3856 6
  private async onSubscribe(
    request: SipMessage,
    st: ServerTransaction,
    party: AuthenticatedParty,
  ): Promise<void> {
    const event = eventPackage(request);
    if (event.name !== PRESENCE_EVENT && !(event.name === CONTACTS_EVENT && this.opts.contactLists)) {
      st.reply(489, 'Bad Event', {
        headers: [{ name: 'allow-events', value: `${PRESENCE_EVENT}, ${CONTACTS_EVENT}` }],
      });
      return;
    }
    const expires = this.grantedExpires(request, st);
    if (expires === undefined) return;
    const toTag = request.to.tag;
    if (toTag !== undefined) {
      const key = dialogKey(request.callId, toTag, request.from.tag ?? '');
      const sub = this.subscriptions.get(key) ?? this.orphans.get(key);
      if (!sub) {
        st.reply(481, 'Subscription Does Not Exist');
        return;
      }
      // RFC 6665 4.2.1.2: a refresh names the subscription's own event package.
      if (event.name !== sub.event || event.id !== sub.eventId) {
        st.reply(489, 'Bad Event');
        return;
      }
      // Only the watcher moves its subscription to another connection.
      const fromUri = request.fromUri;
      if (!fromUri || uriAor(fromUri) !== sub.watcher) {
        st.reply(403, 'Forbidden - not the subscriber');
        return;
      }
      const interval = this.rateControl(event);
      if (interval === 'bad') {
        st.reply(400, 'Bad Request - min-interval is not a number of seconds');
        return;
      }
      this.applyInterval(sub, interval);
      if (this.orphans.get(key) === sub) {
        // Its connection went; the watcher refreshes over a new one within the grace.
        if (expires !== 0 && this.refuseOverLimit(sub.watcher, sub.endpoint, st)) return;
        this.orphans.delete(key);
        if (expires !== 0) this.hold(sub, st.flow);
      }
      this.refresh(sub, request, st, expires);
      return;
    }
    const ruri = request.requestUri;
    const presentity = ruri ? uriAor(ruri) : '';
    const fromUri = request.fromUri;
    const watcher = party.aor ?? (fromUri ? uriAor(fromUri) : '');
    const remoteTarget = sipContact(request);
    if (!remoteTarget) {
      st.reply(400, 'Bad Request - SUBSCRIBE without a SIP Contact');
      return;
    }
    const interval = this.rateControl(event);
    if (interval === 'bad') {
      st.reply(400, 'Bad Request - min-interval is not a number of seconds');
      return;
    }
    if (expires !== 0 && this.refuseOverLimit(watcher, endpointKey(watcher, remoteTarget), st)) return;
    if (!(await this.opts.policy.userExists(presentity))) {
      st.reply(404, 'Not Found');
      return;
    }
    let state: SubscriptionState = 'active';
    let polite = false;
    if (event.name === CONTACTS_EVENT) {
      if (watcher !== presentity) {
        st.reply(403, 'Forbidden - a contact list is visible to its owner only');
        return;
      }
    } else {
      const decision = this.decide(watcher, presentity, await this.opts.policy.accessRules(presentity));
      if (decision === 'block') {
        st.reply(403, 'Forbidden');
        return;
      }
      if (decision === 'pending') state = 'pending';
      if (decision === 'polite-block') polite = true;
    }
    const localTag = createTag();
    const sub: Subscription = {
      id: dialogKey(request.callId, localTag, request.from.tag ?? ''),
      event: event.name,
      eventId: event.id,
      presentity,
      watcher,
      callId: request.callId,
      localTag,
      remoteTag: request.from.tag ?? '',
      remoteNameAddr: request.get('from') ?? '',
      remoteTarget,
      // RFC 3261 12.1.1: the UAS's route set is the Record-Route list in order.
      routeSet: request.getAll('record-route'),
      localCseq: 0,
      flowId: st.flow.id,
      expiresAt: 0,
      state,
      polite,
      endpoint: endpointKey(watcher, remoteTarget),
      minIntervalMs: 0,
      lastNotifyAt: 0,
    };
    this.applyInterval(sub, interval);
    // The limit again: another SUBSCRIBE of this watcher may have been admitted while we waited.
    if (expires !== 0 && this.refuseOverLimit(watcher, sub.endpoint, st)) return;
    st.reply(200, undefined, {
      toTag: localTag,
      headers: [
        { name: 'expires', value: String(expires) },
        { name: 'contact', value: this.opts.local.contact(st.flow) },
      ],
    });
    if (expires === 0) {
      // A fetch (RFC 6665 4.4.3): one NOTIFY with the state, then the subscription is over.
      sub.state = 'terminated';
      await this.sendNotify(sub, 'timeout');
      return;
    }
    this.hold(sub, st.flow);
    this.arm(sub, expires);
    await this.sendNotify(sub);
  }

  /** Starts holding a subscription: counted, notified, and tied to its connection if direct. */
  private hold(sub: Subscription, flow: Flow): void {
    this.subscriptions.set(sub.id, sub);
    this.perWatcher.set(sub.watcher, (this.perWatcher.get(sub.watcher) ?? 0) + 1);
    this.perEndpoint.set(sub.endpoint, (this.perEndpoint.get(sub.endpoint) ?? 0) + 1);
    let set = this.byPresentity.get(sub.presentity);
    if (!set) {
      set = new Set();
      this.byPresentity.set(sub.presentity, set);
    }
    set.add(sub);
    this.tie(sub, flow);
  }

  /**
   * A subscription made or refreshed straight over a connection (no Record-Route: not behind
   * the edge or a director, whose connection carries many users) goes with that connection.
   */
  private tie(sub: Subscription, flow: Flow): void {
    if (sub.connection !== undefined) this.byConnection.get(sub.connection)?.delete(sub);
    sub.connection = flow.transport !== 'udp' && sub.routeSet.length === 0 ? flow.id : undefined;
    if (sub.connection === undefined) return;
    let set = this.byConnection.get(sub.connection);
    if (!set) {
      set = new Set();
      this.byConnection.set(sub.connection, set);
    }
    set.add(sub);
  }

  /**
   * A connection closed: the subscriptions made over it stop being notified and counted
   * against the watcher's limits now (a dead watcher must not hold its user's allowance or
   * the fan-out's time); their dialogs are kept for the connection grace, so a client that
   * reconnects and refreshes keeps its subscription, then go without a NOTIFY (nothing could
   * carry it). Returns how many subscriptions the connection held.
   */
  connectionClosed(connectionId: string): number {
    const tied = this.byConnection.get(connectionId);
    if (!tied) return 0;
    this.byConnection.delete(connectionId);
    const lost = [...tied];
    for (const sub of lost) {
      cancelTimer(sub.timer);
      this.forget(sub);
      this.orphans.set(sub.id, sub);
    }
    const drop = () => {
      for (const sub of lost) if (this.orphans.get(sub.id) === sub) this.orphans.delete(sub.id);
    };
    const grace = this.opts.connectionGraceMs ?? 0;
    if (grace <= 0) drop();
    else this.opts.timers.schedule(grace, drop);
    return lost.length;
  }

  private refresh(sub: Subscription, request: SipMessage, st: ServerTransaction, expires: number): void {
    const target = sipContact(request);
    if (target) sub.remoteTarget = target;
    sub.flowId = st.flow.id;
    sub.template = undefined;
    if (this.subscriptions.get(sub.id) === sub) this.tie(sub, st.flow);
    st.reply(200, undefined, { headers: [{ name: 'expires', value: String(expires) }] });
    if (expires === 0) {
      this.notifySafely(this.terminate(sub, 'timeout'));
      return;
    }
    this.arm(sub, expires);
    this.notifySafely(this.sendNotify(sub));
  }

  private arm(sub: Subscription, expires: number): void {
    cancelTimer(sub.timer);
    sub.expiresAt = Date.now() + expires * 1000;
    sub.timer = this.opts.timers.schedule(expires * 1000, () =>
      this.notifySafely(this.terminate(sub, 'timeout')),
    );
  }

  /** Ends a subscription with a final NOTIFY (RFC 6665 4.2.2: Subscription-State terminated with a reason). */
  terminate(sub: Subscription, reason: 'timeout' | 'deactivated' | 'noresource' | 'rejected'): Promise<void> {
    cancelTimer(sub.timer);
    this.forget(sub);
    sub.state = 'terminated';
    return this.sendNotify(sub, reason);
  }

  private forget(sub: Subscription): void {
    cancelTimer(sub.throttled);
    sub.throttled = undefined;
    if (!this.subscriptions.delete(sub.id)) return;
    if (sub.connection !== undefined) {
      const tied = this.byConnection.get(sub.connection);
      tied?.delete(sub);
      if (tied?.size === 0) this.byConnection.delete(sub.connection);
    }
    decrement(this.perWatcher, sub.watcher);
    decrement(this.perEndpoint, sub.endpoint);
    const set = this.byPresentity.get(sub.presentity);
    set?.delete(sub);
    if (set && set.size === 0) {
      this.byPresentity.delete(sub.presentity);
      this.composed.delete(sub.presentity);
      this.generations.delete(sub.presentity);
    }
  }

  /**
   * Presence of aor changed: every active watcher gets the composed state, composed once
   * for all of them; each NOTIFY is then built and sent without waiting on anything.
   */
  notifyPresentity(aor: string): void {
    if (!this.byPresentity.has(aor)) return;
    const ready = this.composedNow(aor);
    if (ready) {
      this.fanOut(aor, ready);
      return;
    }
    this.compose(aor).then(
      (state) => this.fanOut(aor, state),
      (err: unknown) => this.opts.log.warn({ err, presentity: aor }, 'presence composition failed'),
    );
  }

  private fanOut(aor: string, state: ComposedState): void {
    const subs = this.byPresentity.get(aor);
    if (!subs) return;
    const now = Date.now();
    for (const sub of subs) {
      if (sub.event !== PRESENCE_EVENT || sub.state !== 'active') continue;
      if (sub.minIntervalMs > 0 && this.holdBack(sub, now)) continue;
      const flow = this.liveFlow(sub);
      const body = sub.polite ? Buffer.from(closedPresence(`sip:${sub.presentity}`)) : state.body;
      if (flow) this.emitNotify(sub, flow, this.stateValue(sub), body);
      else this.notifySafely(this.sendNotify(sub));
    }
  }

  /** Shutdown: every watcher is told to come back later (RFC 6665 4.1.3 "deactivated": retry at once). */
  async shutdown(): Promise<void> {
    const all = [...this.subscriptions.values()];
    await Promise.allSettled(all.map((s) => this.terminate(s, 'deactivated')));
    for (const timer of this.expiryTimers.values()) cancelTimer(timer);
    this.expiryTimers.clear();
    await this.unlisten?.();
  }

  private async sendNotify(sub: Subscription, reason?: string): Promise<void> {
    const headers: SipHeader[] = [];
    let body: Buffer | undefined;
    let contentType: SipHeader | undefined;
    if (sub.event === PRESENCE_EVENT) {
      if (sub.state === 'active' || (sub.state === 'terminated' && reason === 'timeout')) {
        body = sub.polite
          ? Buffer.from(closedPresence(`sip:${sub.presentity}`))
          : (this.composedNow(sub.presentity) ?? (await this.compose(sub.presentity))).body;
        contentType = PIDF_TYPE_HEADER;
      }
    } else if (this.opts.contactLists && sub.state !== 'terminated') {
      const list = await this.opts.contactLists.read(sub.presentity);
      body = Buffer.from(list.body);
      contentType = { name: 'content-type', value: this.opts.contactLists.contentType };
      headers.push({ name: 'sip-etag', value: String(list.version) });
    }
    const flow = await this.flowFor(sub);
    if (!flow) {
      this.opts.log.debug({ sub: sub.id }, 'watcher unreachable; dropping subscription');
      cancelTimer(sub.timer);
      this.forget(sub);
      return;
    }
    this.emitNotify(sub, flow, this.stateValue(sub, reason), body, contentType, headers);
  }

  /** RFC 6665 4.2.2: the Subscription-State value of the next NOTIFY. */
  private stateValue(sub: Subscription, reason?: string): string {
    if (sub.state === 'terminated') return `terminated;reason=${reason ?? 'noresource'}`;
    const remaining = Math.max(0, Math.round((sub.expiresAt - Date.now()) / 1000));
    // RFC 6446 6.2: the notifier says which min-interval it applies.
    if (sub.minIntervalMs > 0)
      return `${sub.state};expires=${remaining};min-interval=${formatSeconds(sub.minIntervalMs)}`;
    return `${sub.state};expires=${remaining}`;
  }

  /**
   * RFC 6446 4 and 5: a state change inside the watcher's min-interval is not notified now;
   * one NOTIFY goes when the interval ends, with the state at that time, however many
   * changes came meanwhile. True when this change is held back.
   */
  private holdBack(sub: Subscription, now: number): boolean {
    if (sub.throttled) return true;
    const due = sub.lastNotifyAt + sub.minIntervalMs;
    if (now >= due) return false;
    sub.throttled = this.opts.timers.schedule(due - now, () => {
      sub.throttled = undefined;
      if (sub.state === 'active' && this.subscriptions.get(sub.id) === sub)
        this.notifySafely(this.sendNotify(sub));
    });
    return true;
  }

  /** RFC 6446 min-interval (seconds) of the SUBSCRIBE's Event header, 'bad' when unreadable. */
  private rateControl(event: { params: Record<string, string> }): number | undefined | 'bad' {
    // min-interval is RFC 6446's name; throttle is the draft's (draft-niemi-sipping-event-throttle), still sent by some clients.
    const text = event.params['min-interval'] ?? event.params.throttle;
    if (text === undefined) return undefined;
    if (!/^\d{1,9}(\.\d{1,3})?$/.test(text)) return 'bad';
    return Number(text);
  }

  private applyInterval(sub: Subscription, asked: number | undefined): void {
    sub.askedInterval = asked;
    const floor = this.opts.minNotifyIntervalMs ?? 0;
    // The notifier may use a longer interval than asked, never a shorter one (RFC 6446 4).
    sub.minIntervalMs = Math.max(floor, Math.round((asked ?? 0) * 1000));
  }

  /**
   * Subscription limits per watcher and per endpoint. A refusal is a 403 with a Warning
   * (RFC 3261 20.43, code 399) naming the limit: the request is well formed and authorized in
   * itself, but this user may not hold more, and repeating it will not help until it ends
   * others; a 503 would invite the client to retry the same request later.
   */
  private refuseOverLimit(watcher: string, endpoint: string, st: ServerTransaction): boolean {
    const perUser = this.opts.maxSubscriptionsPerUser;
    const perEndpoint = this.opts.maxSubscriptionsPerEndpoint;
    let text: string | undefined;
    if (perUser !== undefined && (this.perWatcher.get(watcher) ?? 0) >= perUser)
      text = `at most ${perUser} subscriptions per user`;
    else if (perEndpoint !== undefined && (this.perEndpoint.get(endpoint) ?? 0) >= perEndpoint)
      text = `at most ${perEndpoint} subscriptions per endpoint`;
    if (text === undefined) return false;
    this.opts.onLimit?.(text);
    st.reply(403, 'Forbidden - subscription limit reached', {
      headers: [{ name: 'warning', value: `399 ${this.opts.domain} "${text}"` }],
    });
    return true;
  }

  /**
   * Builds and sends one NOTIFY. Every value comes from a parsed request or from us (the
   * remote target is a SIP URI, sipContact), so the message is built as it is sent: no text
   * to parse back. The headers that stay the same for the dialog come from its template;
   * they are shared between NOTIFYs and never modified.
   */
  private emitNotify(
    sub: Subscription,
    flow: Flow,
    state: string,
    body: Buffer | undefined,
    contentType: SipHeader | undefined = body ? PIDF_TYPE_HEADER : undefined,
    extra: SipHeader[] = [],
  ): void {
    const t = this.templateFor(sub, flow);
    sub.localCseq++;
    sub.lastNotifyAt = Date.now();
    const headers: SipHeader[] = [{ name: 'via', value: this.opts.local.via(flow, createBranch()) }];
    for (const route of t.routes) headers.push(route);
    headers.push(
      MAX_FORWARDS,
      t.from,
      t.to,
      t.callId,
      { name: 'cseq', value: `${sub.localCseq} NOTIFY` },
      t.contact,
      t.event,
      { name: 'subscription-state', value: state },
    );
    for (const h of extra) headers.push(h);
    if (contentType) headers.push(contentType);
    const notify = SipMessage.request('NOTIFY', sub.remoteTarget, headers, body ?? EMPTY);
    this.opts.onNotify?.();
    sub.answers ??= this.notifyAnswers(sub);
    this.opts.transactions.request(notify, flow, sub.answers);
  }

  /** What the answers to a subscription's NOTIFYs do: one handler per subscription, not per NOTIFY. */
  private notifyAnswers(sub: Subscription): ClientTransactionHandler {
    return {
      onResponse: (res) => {
        // RFC 6665 4.1.3: 481 (and other failures) mean the subscriber is gone. A 480 comes
        // from the watcher's home when the watcher is no longer there (moved by a wave, its
        // connection gone): its next refresh gets 481 and it subscribes afresh where it lives.
        if (res.status === 481 || res.status === 480 || res.status === 408 || res.status >= 500) {
          cancelTimer(sub.timer);
          this.forget(sub);
        }
      },
      onTimeout: () => {
        cancelTimer(sub.timer);
        this.forget(sub);
      },
    };
  }

  private templateFor(sub: Subscription, flow: Flow): NotifyTemplate {
    const cached = sub.template;
    if (cached && cached.flowId === flow.id) return cached;
    const template: NotifyTemplate = {
      flowId: flow.id,
      routes: sub.routeSet.map((value) => ({ name: 'route', value })),
      from: {
        name: 'from',
        value: formatNameAddr({ uri: `sip:${sub.presentity}`, params: { tag: sub.localTag } }),
      },
      to: { name: 'to', value: sub.remoteNameAddr },
      callId: { name: 'call-id', value: sub.callId },
      contact: { name: 'contact', value: this.opts.local.contact(flow) },
      event: { name: 'event', value: `${sub.event}${sub.eventId ? `;id=${sub.eventId}` : ''}` },
    };
    sub.template = template;
    return template;
  }

  /** The watcher's connection when it is still open: the NOTIFY goes out at once. */
  private liveFlow(sub: Subscription): Flow | undefined {
    const flow = this.opts.flowById(sub.flowId);
    return flow && !flow.closed ? flow : undefined;
  }

  private async flowFor(sub: Subscription): Promise<Flow | undefined> {
    const flow = this.liveFlow(sub);
    if (flow) return flow;
    const first = sub.routeSet.length > 0 ? parseNameAddr(sub.routeSet[0])?.uri : sub.remoteTarget;
    if (!first) return undefined;
    try {
      return await this.opts.resolveUri(first);
    } catch {
      return undefined;
    }
  }
}

/** The first Contact's URI when it is a sip, sips or tel URI (parsed with the message): a NOTIFY's target. */
function sipContact(request: SipMessage): string | undefined {
  return request.contactUris[0] === undefined ? undefined : request.contacts[0].uri;
}

function dialogKey(callId: string, localTag: string, remoteTag: string): string {
  return `${callId}|${localTag}|${remoteTag}`;
}

/** Event header: package name, id parameter (RFC 6665 8.2.1) and the other parameters, names lower-cased. */
function eventPackage(request: SipMessage): { name: string; id?: string; params: Record<string, string> } {
  const value = request.get('event') ?? '';
  const parts = value.split(';');
  const name = parts[0].trim().toLowerCase();
  const params: Record<string, string> = {};
  for (const part of parts.slice(1)) {
    const eq = part.indexOf('=');
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (key !== '') params[key] = eq < 0 ? '' : part.slice(eq + 1).trim();
  }
  return { name, id: params.id, params };
}

/** A watcher's device: its user and its Contact URI without parameters (RFC 3261 19.1.4 comparison is looser; this is a count key). */
function endpointKey(watcher: string, contact: string): string {
  const semi = contact.indexOf(';');
  return `${watcher} ${(semi < 0 ? contact : contact.slice(0, semi)).toLowerCase()}`;
}

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 0) - 1;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** 1500 -> "1.5", 2000 -> "2". */
function formatSeconds(ms: number): string {
  return String(Math.round(ms) / 1000);
}
