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
  /** The flow it registered over, for requests that must go back over it. */
  flowId?: string;
  serverId: string;
  path: string[];
  /**
   * Contacts a server cannot dial (browser clients, `.invalid` hosts, RFC 5626 `ob`): only
   * their flow reaches them, so the binding dies with the flow.
   */
  flowOnly: boolean;
}

export interface LocationEvents {
  /** The AOR went from no bindings to some (signed in) or from some to none (signed out). */
  signedIn: [aor: string];
  signedOut: [aor: string];
  /** A binding was added, refreshed or removed (a pool mirrors these). */
  changed: [binding: Binding, removed: boolean];
}

/**
 * The location service: AOR -> bindings, in memory. Bindings only mean something while
 * their flows live, and flows die with the process, so a standard server keeps them in
 * memory like Kamailio's usrloc in db_mode 0; a pool member mirrors them into the shared
 * store through `LocationMirror` so other front-ends can find the flow's owner.
 */
export class LocationTable extends EventEmitter<LocationEvents> {
  private readonly byAor = new Map<string, Binding[]>();
  private readonly byFlow = new Map<string, Set<Binding>>();
  private bindingCount = 0;

  constructor(private readonly now: () => number = Date.now) {
    super();
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
    let list = this.byAor.get(binding.aor);
    const wasEmpty = !list || list.length === 0;
    if (!list) {
      list = [];
      this.byAor.set(binding.aor, list);
    }
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
        if (old.contact !== binding.contact) this.emit('changed', old, true);
        this.emit('changed', binding, false);
        return;
      }
    }
    list.push(binding);
    this.bindingCount++;
    this.indexFlow(binding);
    this.emit('changed', binding, false);
    if (wasEmpty) this.emit('signedIn', binding.aor);
  }

  remove(aor: string, contact: string): boolean {
    const list = this.byAor.get(aor);
    if (!list) return false;
    const i = list.findIndex((b) => b.contact === contact);
    if (i < 0) return false;
    this.dropAt(aor, list, i);
    return true;
  }

  removeAll(aor: string): number {
    const list = this.byAor.get(aor);
    if (!list) return 0;
    const n = list.length;
    while (list.length > 0) this.dropAt(aor, list, list.length - 1);
    return n;
  }

  /**
   * An administrator disabled or removed the user: every binding goes (a pool's mirror
   * drops its rows through `changed`). Returns the removed bindings and the flows that
   * carried only this user's own registrations (no Path: the endpoint itself, not a proxy
   * in front of many users) and now carry no binding at all, which the caller may close.
   */
  signOut(aor: string): { removed: Binding[]; idleFlows: string[] } {
    const removed = [...(this.byAor.get(aor) ?? [])];
    this.removeAll(aor);
    const idleFlows = new Set<string>();
    for (const b of removed) {
      if (b.flowId && b.path.length === 0 && !this.byFlow.has(b.flowId)) idleFlows.add(b.flowId);
    }
    return { removed, idleFlows: [...idleFlows] };
  }

  /** A flow closed: flow-only bindings on it go; the others merely lose their flow. */
  flowClosed(flowId: string): Binding[] {
    const set = this.byFlow.get(flowId);
    if (!set) return [];
    this.byFlow.delete(flowId);
    const removed: Binding[] = [];
    for (const b of set) {
      if (b.flowOnly) {
        const list = this.byAor.get(b.aor);
        const i = list ? list.indexOf(b) : -1;
        if (list && i >= 0) {
          this.dropAt(b.aor, list, i);
          removed.push(b);
        }
      } else {
        b.flowId = undefined;
        // A pool's copy must lose the route through the dead flow too.
        this.emit('changed', b, false);
      }
    }
    return removed;
  }

  /** Drops expired bindings (of one AOR, or all); returns how many went. */
  expire(aor?: string): number {
    const now = this.now();
    let n = 0;
    const sweep = (key: string, list: Binding[]) => {
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i].expiresAt <= now) {
          this.dropAt(key, list, i);
          n++;
        }
      }
    };
    if (aor !== undefined) {
      const list = this.byAor.get(aor);
      if (list) sweep(aor, list);
    } else {
      for (const [key, list] of [...this.byAor]) sweep(key, list);
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

  private dropAt(aor: string, list: Binding[], i: number): void {
    const [b] = list.splice(i, 1);
    this.bindingCount--;
    this.unindexFlow(b);
    this.emit('changed', b, true);
    if (list.length === 0) {
      this.byAor.delete(aor);
      this.emit('signedOut', aor);
    }
  }

  private indexFlow(b: Binding): void {
    if (!b.flowId) return;
    let set = this.byFlow.get(b.flowId);
    if (!set) {
      set = new Set();
      this.byFlow.set(b.flowId, set);
    }
    set.add(b);
  }

  private unindexFlow(b: Binding): void {
    if (!b.flowId) return;
    const set = this.byFlow.get(b.flowId);
    if (!set) return;
    set.delete(b);
    if (set.size === 0) this.byFlow.delete(b.flowId);
  }
}
