import { EventEmitter } from 'node:events';

/** One registered contact of an address of record (RFC 3261 10.3, RFC 5626 flows). */
export interface Binding {
  aor: string;
  /** The Contact URI as the endpoint registered it. */
  contact: string;
  /** RFC 5626 +sip.instance and reg-id: a re-registration of the same instance replaces its binding. */
  instanceId?: string;
  regId?: number;
  callId: string;
  cseq: number;
  expiresAt: number;
  q: number;
  userAgent: string;
  /** The flow requests for it go back over (RFC 5626), when it registered over one of ours. */
  flowId?: string;
  /**
   * The connection (TCP, TLS, WebSocket) it registered over directly, without a Path: the
   * binding lives only as long as that connection (after a grace for a reconnect). Unset for
   * UDP, where no connection tells us anything, and behind a proxy's Path, whose connection
   * is shared by many users (the proxy says when the user's own connection goes).
   */
  connectionId?: string;
  serverId: string;
  path: string[];
  /**
   * Contacts a server cannot dial (browser clients, `.invalid` hosts, RFC 5626 `ob`): only
   * their flow reaches them, so the binding dies with the flow.
   */
  flowOnly: boolean;
  /**
   * Where the REGISTER came from, for the sign-in log: transport and address:port. Shared by
   * the bindings registered over one connection: never changed in place.
   */
  source?: Readonly<{ transport: string; address: string }>;
}

/** Why a binding went (the sign-out log's `reason`). */
export type BindingRemoval =
  | 'unregistered'
  | 'expired'
  | 'connection_lost'
  | 'signed_out_by_admin'
  | 'replaced';

export interface LocationEvents {
  /** The AOR went from no bindings to some (signed in) or from some to none (signed out). */
  signedIn: [aor: string];
  signedOut: [aor: string];
  /** A binding was added, refreshed or removed (a pool mirrors these); `why` says why one went. */
  changed: [binding: Binding, removed: boolean, why?: BindingRemoval];
  /**
   * Bindings removed because the connection behind them went and no re-registration
   * replaced them within the grace; `connectionId` names our connection when it was one.
   */
  lost: [bindings: Binding[], connectionId: string | undefined, lostAt: number];
  /** An endpoint registered again over a new connection (it reconnected): what followed the old one moves. */
  moved: [fromConnection: string, toConnection: string];
}

export interface LocationTableOptions {
  /**
   * How long a binding outlives the connection it registered over, so a client that
   * reconnects at once (a network change, a server restart of its own) is not seen offline.
   */
  connectionGraceMs?: number;
  /** Runs `fire` after `ms` (tests drive it by hand). */
  schedule?: (ms: number, fire: () => void) => void;
}

const scheduleUnref = (ms: number, fire: () => void): void => {
  setTimeout(fire, ms).unref();
};

/**
 * The location service: AOR -> bindings, in memory. Bindings only mean something while
 * their flows live, and flows die with the process, so a standard server keeps them in
 * memory like Kamailio's usrloc in db_mode 0; a pool member mirrors them into the shared
 * store through `LocationMirror` so other front-ends can find the flow's owner.
 */
export class LocationTable extends EventEmitter<LocationEvents> {
  private readonly byAor = new Map<string, Binding[]>();
  /** connectionId -> the bindings that live and die with that connection. */
  private readonly byConnection = new Map<string, Set<Binding>>();
  private bindingCount = 0;
  /** Where expireSome() goes on from (a Map iterator follows inserts and deletes). */
  private cursor?: IterableIterator<[string, Binding[]]>;
  private readonly graceMs: number;
  private readonly schedule: (ms: number, fire: () => void) => void;

  constructor(
    private readonly now: () => number = Date.now,
    opts: LocationTableOptions = {},
  ) {
    super();
    this.graceMs = opts.connectionGraceMs ?? 0;
    this.schedule = opts.schedule ?? scheduleUnref;
  }

  lookup(aor: string): Binding[] {
    const list = this.byAor.get(aor);
    if (!list) return [];
    const now = this.now();
    let live = true;
    for (const b of list) if (b.expiresAt <= now) live = false;
    if (live) return list;
    this.expire(aor);
    return this.byAor.get(aor) ?? [];
  }

  /** Adds or refreshes a binding, replacing one with the same contact or the same instance and reg-id. */
  upsert(binding: Binding): void {
    const list = this.byAor.get(binding.aor);
    if (!list) {
      // A list of one, sized to it: most users have one endpoint (`[]` then push reserves 17).
      this.byAor.set(binding.aor, [binding]);
      this.added(binding, true);
      return;
    }
    const wasEmpty = list.length === 0;
    for (let i = 0; i < list.length; i++) {
      const old = list[i];
      const sameInstance =
        binding.instanceId !== undefined &&
        old.instanceId === binding.instanceId &&
        old.regId === binding.regId;
      if (old.contact === binding.contact || sameInstance) {
        this.unindexFlow(old);
        list[i] = binding;
        this.indexFlow(binding);
        if (old.contact !== binding.contact) this.emit('changed', old, true, 'replaced');
        this.emit('changed', binding, false);
        if (old.connectionId && binding.connectionId && old.connectionId !== binding.connectionId)
          this.emit('moved', old.connectionId, binding.connectionId);
        return;
      }
    }
    list.push(binding);
    this.added(binding, wasEmpty);
  }

  private added(binding: Binding, first: boolean): void {
    this.bindingCount++;
    this.indexFlow(binding);
    this.emit('changed', binding, false);
    if (first) this.emit('signedIn', binding.aor);
  }

  remove(aor: string, contact: string): boolean {
    const list = this.byAor.get(aor);
    if (!list) return false;
    const i = list.findIndex((b) => b.contact === contact);
    if (i < 0) return false;
    this.dropAt(aor, list, i, 'unregistered');
    return true;
  }

  removeAll(aor: string, why: BindingRemoval = 'unregistered'): number {
    const list = this.byAor.get(aor);
    if (!list) return 0;
    const n = list.length;
    while (list.length > 0) this.dropAt(aor, list, list.length - 1, why);
    return n;
  }

  /**
   * An administrator disabled or removed the user: every binding goes (a pool's mirror
   * drops its rows through `changed`). Returns the removed bindings and the connections that
   * carried only this user's own registrations (no Path: the endpoint itself, not a proxy
   * in front of many users) and now carry no binding at all, which the caller may close.
   */
  signOut(aor: string): { removed: Binding[]; idleFlows: string[] } {
    const removed = [...(this.byAor.get(aor) ?? [])];
    this.removeAll(aor, 'signed_out_by_admin');
    const idleFlows = new Set<string>();
    for (const b of removed) {
      if (b.connectionId && !this.byConnection.has(b.connectionId)) idleFlows.add(b.connectionId);
    }
    return { removed, idleFlows: [...idleFlows] };
  }

  /**
   * A connection closed: the bindings registered over it go once the grace has passed,
   * unless a re-registration (over a new connection) replaced them meanwhile, as Kamailio's
   * usrloc does with `handle_lost_tcp`. Returns the bindings now waiting to go.
   */
  flowClosed(connectionId: string): Binding[] {
    const set = this.byConnection.get(connectionId);
    if (!set) return [];
    this.byConnection.delete(connectionId);
    const lost = [...set];
    this.dropLater(lost, connectionId);
    return lost;
  }

  /**
   * A proxy in front of the user (the edge) says the user's own connection behind its Path
   * has gone: the bindings of the AOR registered through a Path entry with that URI user
   * part (the proxy's flow token, RFC 5626 5.3) go as a connection of ours would.
   */
  pathFlowClosed(aor: string, pathUser: string): Binding[] {
    const lost = (this.byAor.get(aor) ?? []).filter((b) => b.path.some((p) => pathUriUser(p) === pathUser));
    this.dropLater(lost, undefined);
    return lost;
  }

  private dropLater(lost: Binding[], connectionId: string | undefined): void {
    if (lost.length === 0) return;
    const lostAt = this.now();
    const drop = () => {
      const removed: Binding[] = [];
      for (const b of lost) {
        // A binding the client refreshed or replaced meanwhile is another object: kept.
        const list = this.byAor.get(b.aor);
        const i = list ? list.indexOf(b) : -1;
        if (list && i >= 0) {
          this.dropAt(b.aor, list, i, 'connection_lost');
          removed.push(b);
        }
      }
      if (removed.length > 0) this.emit('lost', removed, connectionId, lostAt);
    };
    if (this.graceMs <= 0) drop();
    else this.schedule(this.graceMs, drop);
  }

  /** Drops expired bindings (of one AOR, or all); returns how many went. */
  expire(aor?: string): number {
    const now = this.now();
    if (aor !== undefined) {
      const list = this.byAor.get(aor);
      return list ? this.sweep(aor, list, now) : 0;
    }
    // A Map's iterator goes on correctly past entries deleted behind it: no copy of the table.
    let n = 0;
    for (const [key, list] of this.byAor) n += this.sweep(key, list, now);
    return n;
  }

  /**
   * expire() a slice at a time: the bindings of at most `budget` AORs, from where the last
   * call stopped, round the table again once it reaches the end. Called often with a small
   * budget, it keeps the sweep's time on the event loop short: the whole table at once (a
   * copy of it, as expire() made before) held the one thread 30-180 ms every 5 s with
   * 100,000 users, the REGISTERs of those moments waiting behind it.
   */
  expireSome(budget: number): number {
    const now = this.now();
    let n = 0;
    this.cursor ??= this.byAor.entries();
    for (let i = 0; i < budget; i++) {
      const next = this.cursor.next();
      if (next.done) {
        this.cursor = undefined;
        break;
      }
      n += this.sweep(next.value[0], next.value[1], now);
    }
    return n;
  }

  /** The number of AORs with bindings. */
  get aorCount(): number {
    return this.byAor.size;
  }

  private sweep(aor: string, list: Binding[], now: number): number {
    let n = 0;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i].expiresAt <= now) {
        this.dropAt(aor, list, i, 'expired');
        n++;
      }
    }
    return n;
  }

  /** The binding whose contact is this URI, for routing in-dialog requests to flow-only clients. */
  findByContact(aor: string, contact: string): Binding | undefined {
    return this.byAor.get(aor)?.find((b) => b.contact === contact);
  }

  get registeredEndpoints(): number {
    return this.bindingCount;
  }

  get signedInUsers(): number {
    return this.byAor.size;
  }

  aors(): IterableIterator<string> {
    return this.byAor.keys();
  }

  private dropAt(aor: string, list: Binding[], i: number, why: BindingRemoval): void {
    const [b] = list.splice(i, 1);
    this.bindingCount--;
    this.unindexFlow(b);
    this.emit('changed', b, true, why);
    if (list.length === 0) {
      this.byAor.delete(aor);
      this.emit('signedOut', aor);
    }
  }

  private indexFlow(b: Binding): void {
    if (!b.connectionId) return;
    let set = this.byConnection.get(b.connectionId);
    if (!set) {
      set = new Set();
      this.byConnection.set(b.connectionId, set);
    }
    set.add(b);
  }

  private unindexFlow(b: Binding): void {
    if (!b.connectionId) return;
    const set = this.byConnection.get(b.connectionId);
    if (!set) return;
    set.delete(b);
    if (set.size === 0) this.byConnection.delete(b.connectionId);
  }
}

/** The user part of a Path value's URI (`<sip:USER@host;lr>`), where a proxy puts its flow token. */
function pathUriUser(path: string): string | undefined {
  return /<sips?:([^@;>]+)@/i.exec(path)?.[1];
}
