import { forgetOldest } from '../transport/limits.js';
import type { Binding, LocationTable } from './location.js';

/**
 * A binding as the workers of one server tell each other of it: what another worker needs
 * to route to it (RFC 3261 16.5): AOR, contact, expiry (ms since the epoch), q, the Path
 * that reaches it (the owner's flow route first when it holds the endpoint's flow) and the
 * RFC 5626 instance.
 */
export type WireBinding = [
  aor: string,
  contact: string,
  expiresAt: number,
  q: number,
  path: string[],
  instanceId: string | null,
];

/** One worker's binding changes of FLUSH_MS, or (reset) all of its bindings. */
export interface BindingBatch {
  /** The owning worker's server id. */
  from: string;
  /** Everything known of `from` is replaced by this batch (a snapshot, or a worker gone). */
  reset?: true;
  set: WireBinding[];
  /** [aor, contact] of bindings removed. */
  gone: Array<[aor: string, contact: string]>;
}

/** Another worker, as a connection to it. */
export interface BindingPeer {
  send(batch: BindingBatch): void;
}

/**
 * How the workers reach each other (src/roles/cluster.ts: a loopback connection between
 * each two workers, the main process saying who listens where).
 */
export interface BindingChannel {
  /** Sends a batch to every other worker. */
  send(batch: BindingBatch): void;
  /**
   * Starts: `onPeer` for each worker connected to (it is sent this worker's snapshot),
   * `onBatch` for what a worker sends, `onGone` with the server id of a worker whose
   * connection closed (it stopped or died). Returns the way to stop.
   */
  open(handlers: {
    onPeer(peer: BindingPeer): void;
    onBatch(batch: BindingBatch): void;
    onGone(from: string): void;
  }): () => void;
}

/** Bindings per snapshot message: 100,000 users are 20 messages, not one of several MiB. */
const SNAPSHOT_CHUNK = 5_000;
/**
 * A worker's changes wait this long to go out together: each batch is a write on every link
 * and a read, parse and wake-up on the other side; sent once per event-loop turn, the writes
 * alone took 4.6-4.9% of each worker's thread at 4-5,000 REGISTERs a second per worker (profile
 * of 3 December, 15:57). A binding is routable from the other workers that much later.
 */
export const FLUSH_MS = 5;
/** Flow routes remembered (a route is an HMAC: one per connection, not per REGISTER). */
const FLOW_ROUTES = 10_000;

/**
 * The workers of one standard server (`server.workers` > 1) share their bindings in memory,
 * as one process holds them all, instead of through the store as front-ends of a pool on
 * PostgreSQL do (LocationMirror): each worker sends its location table's changes of FLUSH_MS
 * as one message to each other worker, and keeps every other worker's bindings, so routing
 * to a user connected to another worker and deciding that a user signed out everywhere
 * cost no query. Two workers that connect send each other a snapshot of their bindings; one
 * that stops or dies is forgotten by the others when its connection closes, and its users
 * come back as their clients register again.
 */
export class WorkerBindings {
  private readonly pending = new Map<string, Binding | null>();
  private flushQueued = false;
  /** Other workers' bindings: server id -> AOR -> bindings. */
  private readonly others = new Map<string, Map<string, Binding[]>>();
  private readonly flowRoutes = new Map<string, string>();
  private close?: () => void;
  private readonly onChanged = (b: Binding, removed: boolean) => this.mark(b, removed);

  constructor(
    private readonly location: LocationTable,
    private readonly channel: BindingChannel,
    private readonly serverId: string,
    private readonly flowRoute: (flowId: string) => string,
    private readonly now: () => number = Date.now,
  ) {
    location.on('changed', this.onChanged);
  }

  /** Hears the other workers; each one connected to gets this one's bindings so far. */
  start(): void {
    this.pending.clear();
    this.close = this.channel.open({
      onPeer: (peer) => this.sendSnapshot(peer),
      onBatch: (batch) => this.apply(batch),
      onGone: (from) => this.others.delete(from),
    });
  }

  /** Bindings of the AOR held by the other workers, unexpired. */
  remote(aor: string): Binding[] {
    let found: Binding[] | undefined;
    let copied = false;
    for (const table of this.others.values()) {
      const list = table.get(aor);
      if (!list || list.length === 0) continue;
      if (!found) found = list;
      else {
        if (!copied) found = [...found];
        copied = true;
        found.push(...list);
      }
    }
    if (!found) return [];
    const now = this.now();
    for (const b of found) if (b.expiresAt <= now) return found.filter((x) => x.expiresAt > now);
    return found;
  }

  /** Of these AORs, the ones signed in on no worker. */
  async signedOutEverywhere(aors: readonly string[]): Promise<string[]> {
    return aors.filter((aor) => this.location.lookup(aor).length === 0 && this.remote(aor).length === 0);
  }

  /**
   * Users signed in here and on no worker whose id sorts before this one's: summed over the
   * workers (the main process's /health and /metrics), each user counts once, as one process
   * counts them; a user with endpoints on two workers counts on the first.
   */
  usersCountedHere(): number {
    const before: Map<string, Binding[]>[] = [];
    for (const [from, table] of this.others) if (from < this.serverId) before.push(table);
    if (before.length === 0) return this.location.signedInUsers;
    let n = 0;
    for (const aor of this.location.aors()) if (!before.some((t) => t.has(aor))) n++;
    return n;
  }

  /** Bindings known of other workers (tests, /health). */
  get remoteCount(): number {
    let n = 0;
    for (const table of this.others.values()) for (const list of table.values()) n += list.length;
    return n;
  }

  /** Shutdown: the others forget this worker's bindings. */
  async stop(): Promise<void> {
    this.location.off('changed', this.onChanged);
    this.pending.clear();
    this.channel.send({ from: this.serverId, reset: true, set: [], gone: [] });
    this.close?.();
    this.close = undefined;
    this.others.clear();
  }

  private mark(b: Binding, removed: boolean): void {
    this.pending.set(`${b.aor}\n${b.contact}`, removed ? null : b);
    if (this.flushQueued) return;
    this.flushQueued = true;
    setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.pending.size === 0 || !this.close) return;
    const batch: BindingBatch = { from: this.serverId, set: [], gone: [] };
    for (const [key, b] of this.pending) {
      if (b) batch.set.push(this.wire(b));
      else {
        const cut = key.indexOf('\n');
        batch.gone.push([key.slice(0, cut), key.slice(cut + 1)]);
      }
    }
    this.pending.clear();
    this.channel.send(batch);
  }

  /** All of this worker's bindings, to one worker, in chunks, the first a reset. */
  private sendSnapshot(peer: BindingPeer): void {
    let chunk: WireBinding[] = [];
    let first = true;
    const send = () => {
      peer.send(
        first
          ? { from: this.serverId, reset: true, set: chunk, gone: [] }
          : { from: this.serverId, set: chunk, gone: [] },
      );
      first = false;
      chunk = [];
    };
    for (const aor of this.location.aors()) {
      for (const b of this.location.lookup(aor)) {
        chunk.push(this.wire(b));
        if (chunk.length >= SNAPSHOT_CHUNK) send();
      }
    }
    if (first || chunk.length > 0) send();
  }

  private wire(b: Binding): WireBinding {
    const path = b.flowId ? [this.routeOf(b.flowId), ...b.path] : b.path;
    return [b.aor, b.contact, b.expiresAt, b.q, path, b.instanceId ?? null];
  }

  private routeOf(flowId: string): string {
    let route = this.flowRoutes.get(flowId);
    if (route === undefined) {
      route = this.flowRoute(flowId);
      this.flowRoutes.set(flowId, route);
      forgetOldest(this.flowRoutes, FLOW_ROUTES);
    }
    return route;
  }

  private apply(batch: BindingBatch): void {
    if (batch.from === this.serverId) return;
    let table = this.others.get(batch.from);
    if (batch.reset) {
      if (batch.set.length === 0) {
        this.others.delete(batch.from);
        return;
      }
      table = new Map();
      this.others.set(batch.from, table);
    } else if (!table) {
      table = new Map();
      this.others.set(batch.from, table);
    }
    for (const [aor, contact] of batch.gone) {
      const list = table.get(aor);
      if (!list) continue;
      const i = list.findIndex((b) => b.contact === contact);
      if (i < 0) continue;
      if (list.length === 1) table.delete(aor);
      else
        table.set(
          aor,
          list.filter((_, j) => j !== i),
        );
    }
    for (const w of batch.set) {
      const b = fromWire(w, batch.from);
      const list = table.get(b.aor);
      if (!list) {
        table.set(b.aor, [b]);
        continue;
      }
      const i = list.findIndex((x) => x.contact === b.contact);
      // Lists are replaced, not changed in place: a lookup's answer may still be in use.
      table.set(b.aor, i < 0 ? [...list, b] : list.map((x, j) => (j === i ? b : x)));
    }
  }
}

function fromWire(w: WireBinding, serverId: string): Binding {
  const [aor, contact, expiresAt, q, path, instanceId] = w;
  return {
    aor,
    contact,
    instanceId: instanceId ?? undefined,
    callId: '',
    cseq: 0,
    expiresAt,
    q,
    userAgent: '',
    serverId,
    path,
    // Reached along its Path (the owner's flow route) or at its contact, as a pool member's.
    flowOnly: false,
  };
}
