import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';
import { AUTH_FAILURE_REASONS, type AuthFailureReason } from '../registrar/authenticator.js';

/**
 * Prometheus metrics of a Parley server.
 *
 * Hot-path cost: prom-client's `inc()` hashes a labels object on every call. The SIP code
 * instead bumps plain numbers (`HotCounter`, fixed arrays indexed by method or status
 * class) and prom-client reads them only when /metrics is scraped (`collect`). Labels
 * come from closed sets (methods, status classes, failure kinds), so no caller can grow
 * the series count, and nothing builds a string per message.
 */

/** A monotonically increasing number; `inc` is one addition. */
export class HotCounter {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

/** A number that goes up and down (endpoints, signed-in users), unless a source is given. */
export class HotGauge {
  value = 0;
  set(v: number): void {
    this.value = v;
  }
  inc(by = 1): void {
    this.value += by;
  }
  dec(by = 1): void {
    this.value -= by;
  }
}

/** SIP methods counted by name; anything else is counted as `other` (RFC 3261 7.1 allows extensions). */
export const COUNTED_METHODS = [
  'REGISTER',
  'INVITE',
  'ACK',
  'BYE',
  'CANCEL',
  'OPTIONS',
  'MESSAGE',
  'SUBSCRIBE',
  'NOTIFY',
  'PUBLISH',
  'INFO',
  'UPDATE',
  'PRACK',
  'REFER',
  'other',
] as const;
export type CountedMethod = (typeof COUNTED_METHODS)[number];

const METHOD_INDEX: Record<string, number> = Object.create(null);
COUNTED_METHODS.forEach((m, i) => {
  METHOD_INDEX[m] = i;
});
const OTHER_METHOD = COUNTED_METHODS.length - 1;

/** Requests received, by method: one object lookup and one addition per request. */
export class MethodCounter {
  readonly counts = new Float64Array(COUNTED_METHODS.length);
  inc(method: string): void {
    this.counts[METHOD_INDEX[method] ?? OTHER_METHOD] += 1;
  }
}

export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', '6xx'] as const;

/** Responses sent, by status class (RFC 3261 7.2): 1xx..6xx, so six series at most. */
export class StatusClassCounter {
  readonly counts = new Float64Array(STATUS_CLASSES.length);
  inc(status: number): void {
    const cls = (status / 100) | 0;
    if (cls >= 1 && cls <= 6) this.counts[cls - 1] += 1;
  }
}

export const FAILURE_KINDS = [
  'transport',
  'tls',
  'parse',
  'timeout',
  'routing',
  'store',
  'directory',
  'federation',
  'internal',
  'overload',
] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

/**
 * Transaction latency in seconds. A fixed-bucket histogram observed in place: a short
 * linear scan over 12 bounds and two additions, no allocation. (A prom-client Summary
 * keeps quantile sketches and costs far more per observation; sampling would lose rare
 * slow transactions, which are the ones that matter.) Upper bound 32 s = Timer B/F
 * (64*T1, RFC 3261 17.1.1.2), past which a transaction has timed out anyway.
 */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 4, 32] as const;

export class LatencyHistogram {
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length);
  count = 0;
  sum = 0;
  observe(seconds: number): void {
    this.count += 1;
    this.sum += seconds;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]) {
        this.buckets[i] += 1;
        return;
      }
    }
  }
  /** Observes the time since `start`, a `performance.now()` reading in milliseconds. */
  observeSince(start: number): void {
    this.observe((performance.now() - start) / 1000);
  }
}

/**
 * Users with traffic in the last `windowMs` (default 5 minutes). `touch` is one Map write
 * per request; expired users are dropped when the count is read (at scrape time), so the
 * map never holds more than the users active since the previous scrape plus the window.
 */
export class ActiveUserTracker {
  private readonly lastSeen = new Map<string, number>();

  constructor(
    readonly windowMs = 5 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  touch(user: string): void {
    this.lastSeen.set(user, this.now());
  }

  /** Active users now; prunes the ones not seen within the window. */
  count(): number {
    const cutoff = this.now() - this.windowMs;
    for (const [user, seen] of this.lastSeen) {
      if (seen < cutoff) this.lastSeen.delete(user);
    }
    return this.lastSeen.size;
  }

  forget(user: string): void {
    this.lastSeen.delete(user);
  }
}

/** Why an accepted connection was refused (src/transport/limits.ts). */
export const CONNECTION_REFUSALS = [
  'per_address',
  'global',
  'untrusted_proxy',
  'bad_proxy_header',
  'peer_certificate',
] as const;
/** Why a connection was closed for its pace rather than its content. */
export const CONNECTION_TIMEOUTS = ['header_timeout', 'idle_timeout'] as const;

/**
 * Why the edge refused a request: the federation policy's reasons (src/federation/policy.ts),
 * the request-rate limits, an oversized message, or a request the edge has no business
 * passing (a sender from another domain on the remote-user side, a partner's request for
 * a domain not ours).
 */
export const EDGE_REFUSALS = [
  'not_allowed',
  'blocked',
  'certificate',
  'own_domain',
  'rate_address',
  'rate_partner',
  'too_large',
  'wrong_side',
  'relaying',
] as const;
export type EdgeRefusal = (typeof EDGE_REFUSALS)[number];

/** What the client version rules did to a refused request (docs/clients.md). */
export const CLIENT_REFUSALS = ['block', 'upgrade'] as const;

/** Where a front-end found the bindings a user holds on other front-ends of its pool. */
export const POOL_LOOKUP_SOURCES = ['cache', 'store'] as const;

/** Counts by a reason from a closed list, so the series count is fixed. */
export class ReasonCounter<R extends string> {
  readonly counts: Float64Array;
  private readonly index: Record<string, number> = Object.create(null);
  constructor(readonly reasons: readonly R[]) {
    this.counts = new Float64Array(reasons.length);
    reasons.forEach((r, i) => {
      this.index[r] = i;
    });
  }
  inc(reason: R): void {
    const i = this.index[reason];
    if (i !== undefined) this.counts[i] += 1;
  }
}

export interface ParleyMetrics {
  readonly registry: Registry;
  /** Registered contacts (bindings) across all users. */
  readonly registeredEndpoints: HotGauge;
  /** Users with at least one registered endpoint. */
  readonly signedInUsers: HotGauge;
  /** Touch with the user's AOR on each request from them. */
  readonly activeUsers: ActiveUserTracker;
  readonly requestsReceived: MethodCounter;
  readonly responsesSent: StatusClassCounter;
  /** MESSAGE requests routed to an endpoint (RFC 3428), one per delivered fork. */
  readonly messagesRouted: HotCounter;
  /** Body bytes of routed MESSAGEs. */
  readonly messageBytesRouted: HotCounter;
  readonly presenceNotifications: HotCounter;
  /** Requests refused although they carried credentials, by reason (not the first challenge). */
  /** Refusals of requests that carried credentials, by the Authenticator's reason. */
  readonly authFailures: ReasonCounter<AuthFailureReason>;
  /** Digest challenges sent (401/407), the first of every sign-in included. */
  readonly authChallenges: HotCounter;
  readonly transactionLatency: LatencyHistogram;
  readonly failures: ReasonCounter<FailureKind>;
  readonly connectionsRefused: ReasonCounter<(typeof CONNECTION_REFUSALS)[number]>;
  readonly connectionsTimedOut: ReasonCounter<(typeof CONNECTION_TIMEOUTS)[number]>;
  /** Requests the edge refused (federation policy, rate limits, size), by reason. */
  readonly edgeRefusals: ReasonCounter<EdgeRefusal>;
  /** Archive rows written, write failures (each failed batch write), and rows dropped after failures. */
  readonly archiveWritten: HotCounter;
  readonly archiveFailures: HotCounter;
  readonly archiveDropped: HotCounter;
  /** Requests refused by the client version rules, by action. */
  readonly clientRefusals: ReasonCounter<(typeof CLIENT_REFUSALS)[number]>;
  /** A pool member's lookups of the bindings other front-ends hold, by where they were answered. */
  readonly poolBindingLookups: ReasonCounter<(typeof POOL_LOOKUP_SOURCES)[number]>;
  /** Prometheus text exposition of every metric. */
  render(): Promise<string>;
  readonly contentType: string;
}

export interface CreateMetricsOptions {
  /** Labels on every series, e.g. { server: cfg.serverId, role: cfg.role }. */
  labels?: Record<string, string>;
  /** Node process metrics (CPU, memory, event loop lag) as parley_process_*, parley_nodejs_*. */
  processMetrics?: boolean;
  /**
   * Read gauges from a source of truth at scrape time instead of the in-process values,
   * e.g. a store query on a pool where registrations live in the shared database.
   */
  sources?: {
    registeredEndpoints?: () => number | Promise<number>;
    signedInUsers?: () => number | Promise<number>;
    /** Accepted SIP connections open now. */
    connections?: () => number;
    /** Server transactions alive: a number that must come back down, whatever the input. */
    serverTransactions?: () => number;
    /** Archive rows not yet written. */
    archiveBacklog?: () => number;
    /** 1 when the store answers a trivial query (within its own timeout), else 0. */
    storeUp?: () => Promise<number>;
    /** Unix time (seconds) the server's TLS certificate expires, when it has one. */
    certificateExpiry?: () => number | undefined;
  };
  activeWindowMs?: number;
  now?: () => number;
}

export function createMetrics(opts: CreateMetricsOptions = {}): ParleyMetrics {
  const registry = new Registry();
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  if (opts.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry, prefix: 'parley_' });
    new Gauge({
      name: 'parley_heap_size_limit_bytes',
      help: "V8's heap limit: the old generation's plus the young one's (three semi-spaces, server.semiSpaceMb)",
      registers: [registry],
      aggregator: 'max',
      collect() {
        this.set(getHeapStatistics().heap_size_limit);
      },
    });
  }

  const registeredEndpoints = new HotGauge();
  const signedInUsers = new HotGauge();
  const activeUsers = new ActiveUserTracker(opts.activeWindowMs, opts.now);
  const requestsReceived = new MethodCounter();
  const responsesSent = new StatusClassCounter();
  const messagesRouted = new HotCounter();
  const messageBytesRouted = new HotCounter();
  const presenceNotifications = new HotCounter();
  const authFailures = new ReasonCounter(AUTH_FAILURE_REASONS);
  const authChallenges = new HotCounter();
  const transactionLatency = new LatencyHistogram();
  const failures = new ReasonCounter(FAILURE_KINDS);
  const registers = [registry];

  new Gauge({
    name: 'parley_registered_endpoints',
    help: 'Registered endpoints (contact bindings)',
    registers,
    async collect() {
      const source = opts.sources?.registeredEndpoints;
      this.set(source ? await source() : registeredEndpoints.value);
    },
  });
  new Gauge({
    name: 'parley_signed_in_users',
    help: 'Users with at least one registered endpoint',
    registers,
    async collect() {
      const source = opts.sources?.signedInUsers;
      this.set(source ? await source() : signedInUsers.value);
    },
  });
  new Gauge({
    name: 'parley_sip_server_transactions',
    help: 'SIP server transactions in progress',
    registers,
    collect() {
      this.set(opts.sources?.serverTransactions?.() ?? 0);
    },
  });
  new Gauge({
    name: 'parley_active_users',
    help: 'Users who sent traffic within the activity window (default 5 minutes)',
    registers,
    collect() {
      this.set(activeUsers.count());
    },
  });

  counterFrom(
    'parley_sip_requests_received_total',
    'SIP requests received, by method',
    'method',
    COUNTED_METHODS,
    requestsReceived.counts,
  );
  counterFrom(
    'parley_sip_responses_sent_total',
    'SIP responses sent, by status class',
    'class',
    STATUS_CLASSES,
    responsesSent.counts,
  );
  counterFrom('parley_failures_total', 'Failures, by kind', 'kind', FAILURE_KINDS, failures.counts);
  const connectionsRefused = new ReasonCounter(CONNECTION_REFUSALS);
  const connectionsTimedOut = new ReasonCounter(CONNECTION_TIMEOUTS);
  counterFrom(
    'parley_sip_connections_refused_total',
    'SIP connections refused at accept, by reason (limits)',
    'reason',
    CONNECTION_REFUSALS,
    connectionsRefused.counts,
  );
  counterFrom(
    'parley_sip_connections_timed_out_total',
    'SIP connections closed by the header or idle timeout',
    'reason',
    CONNECTION_TIMEOUTS,
    connectionsTimedOut.counts,
  );
  const edgeRefusals = new ReasonCounter(EDGE_REFUSALS);
  counterFrom(
    'parley_edge_refusals_total',
    'Requests refused at the edge (federation policy, rate limits, size), by reason',
    'reason',
    EDGE_REFUSALS,
    edgeRefusals.counts,
  );
  const archiveWritten = new HotCounter();
  const archiveFailures = new HotCounter();
  const archiveDropped = new HotCounter();
  plainCounter('parley_archive_written_total', 'Messages written to the archive', archiveWritten);
  plainCounter('parley_archive_failures_total', 'Archive batch writes that failed', archiveFailures);
  plainCounter('parley_archive_dropped_total', 'Archive rows dropped after write failures', archiveDropped);
  new Gauge({
    name: 'parley_archive_backlog',
    help: 'Messages waiting to be written to the archive',
    registers,
    collect() {
      this.set(opts.sources?.archiveBacklog?.() ?? 0);
    },
  });
  if (opts.sources?.storeUp) {
    const storeUp = opts.sources.storeUp;
    new Gauge({
      name: 'parley_store_up',
      help: 'Whether the store (embedded or PostgreSQL) answered a query at scrape time',
      registers,
      async collect() {
        this.set(await storeUp());
      },
    });
  }
  if (opts.sources?.certificateExpiry) {
    const expiry = opts.sources.certificateExpiry;
    new Gauge({
      name: 'parley_tls_certificate_expiry_seconds',
      help: "Unix time the server's TLS certificate stops being valid",
      registers,
      collect() {
        const at = expiry();
        if (at !== undefined) this.set(at);
      },
    });
  }
  const clientRefusals = new ReasonCounter(CLIENT_REFUSALS);
  counterFrom(
    'parley_client_refusals_total',
    'Requests refused by the client version rules (403), by action',
    'action',
    CLIENT_REFUSALS,
    clientRefusals.counts,
  );
  const poolBindingLookups = new ReasonCounter(POOL_LOOKUP_SOURCES);
  counterFrom(
    'parley_pool_binding_lookups_total',
    "Lookups of a user's bindings on other front-ends of the pool, by source (cache kept by LISTEN/NOTIFY, or a store query)",
    'source',
    POOL_LOOKUP_SOURCES,
    poolBindingLookups.counts,
  );
  new Gauge({
    name: 'parley_sip_connections',
    help: 'Accepted SIP connections open',
    registers,
    collect() {
      this.set(opts.sources?.connections?.() ?? 0);
    },
  });
  plainCounter('parley_messages_routed_total', 'Instant messages routed to an endpoint', messagesRouted);
  plainCounter(
    'parley_message_bytes_routed_total',
    'Body bytes of instant messages routed',
    messageBytesRouted,
  );
  plainCounter(
    'parley_presence_notifications_sent_total',
    'Presence NOTIFY requests sent',
    presenceNotifications,
  );
  counterFrom(
    'parley_auth_failures_total',
    'Requests refused although they carried digest credentials, by reason',
    'reason',
    AUTH_FAILURE_REASONS,
    authFailures.counts,
  );
  plainCounter(
    'parley_auth_challenges_total',
    'Digest challenges sent (401/407), including the first of every sign-in',
    authChallenges,
  );
  registry.registerMetric(
    histogramMetric('parley_sip_transaction_seconds', 'SIP transaction duration', transactionLatency),
  );

  function plainCounter(name: string, help: string, hot: HotCounter): void {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(hot.value);
      },
    });
  }

  function counterFrom(
    name: string,
    help: string,
    label: string,
    values: readonly string[],
    counts: Float64Array,
  ): void {
    new Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (let i = 0; i < values.length; i++) this.inc({ [label]: values[i] }, counts[i]);
      },
    });
  }

  return {
    registry,
    registeredEndpoints,
    signedInUsers,
    activeUsers,
    requestsReceived,
    responsesSent,
    messagesRouted,
    messageBytesRouted,
    presenceNotifications,
    authFailures,
    authChallenges,
    transactionLatency,
    failures,
    connectionsRefused,
    connectionsTimedOut,
    edgeRefusals,
    clientRefusals,
    archiveWritten,
    archiveFailures,
    archiveDropped,
    poolBindingLookups,
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

/**
 * A prom-client-compatible metric reading our LatencyHistogram at scrape time (prom-client's
 * Histogram cannot be fed precomputed bucket counts). Registry only calls name, type, get().
 */
function histogramMetric(name: string, help: string, h: LatencyHistogram): Metric {
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get() {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> =
        [];
      let cumulative = 0;
      for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
        cumulative += h.buckets[i];
        values.push({ metricName: `${name}_bucket`, labels: { le: LATENCY_BUCKETS[i] }, value: cumulative });
      }
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: h.count });
      values.push({ metricName: `${name}_sum`, labels: {}, value: h.sum });
      values.push({ metricName: `${name}_count`, labels: {}, value: h.count });
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
    reset() {},
  };
  return metric as unknown as Metric;
}
