import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ClientGate } from '../clients/gate.js';
import type { ParleyConfig } from '../ops/config.js';
import { type HealthReport, type OpsServer, startOpsServer } from '../ops/http.js';
import { createMetrics, type ParleyMetrics } from '../ops/metrics.js';
import type { PresenceServer } from '../presence/server.js';
import type { LocationTable } from '../registrar/location.js';
import { SESSIONS_SECRET_KEY, sessionsRoute, snapshotSessions } from '../reports/sessions.js';
import { ServerRepository } from '../store/servers.js';
import { sharedSecret } from '../store/settings.js';
import type { Database } from '../store/sql.js';
import type { TransportLayer } from '../transport/layer.js';

/** The gauges a server's metrics read from its layers when scraped. */
export interface ServerGauges {
  /** Users signed in (a worker counts those no worker before it counts: the sum is each user once). */
  signedInUsers(): number;
  connections(): number;
  serverTransactions(): number;
  archiveBacklog(): number;
}

/**
 * A home server's metrics. `serverId` is the configured one: a clustered server's workers
 * report as one server (their series are summed).
 */
export function createServerMetrics(
  config: ParleyConfig,
  serverId: string,
  db: Database,
  location: LocationTable,
  gauges: ServerGauges,
): ParleyMetrics {
  return createMetrics({
    labels: { server: serverId, role: config.role },
    sources: {
      registeredEndpoints: () => location.registeredEndpoints,
      signedInUsers: gauges.signedInUsers,
      connections: gauges.connections,
      serverTransactions: gauges.serverTransactions,
      archiveBacklog: gauges.archiveBacklog,
      storeUp: () => storeAnswers(new ServerRepository(db)),
      certificateExpiry: certificateExpiry(config),
    },
  });
}

/** What the operations endpoint reports on: the server's live state. */
export interface OpsSources {
  config: ParleyConfig;
  db: Database;
  metrics: ParleyMetrics;
  location: LocationTable;
  transport: TransportLayer;
  presence: PresenceServer;
  clientGate: ClientGate;
  draining: () => boolean;
  signedInUsers: () => number;
  /** A worker of a clustered server: the other workers' endpoints it knows of (WorkerBindings). */
  otherWorkersEndpoints?: () => number;
}

/** The operations endpoint: /metrics, /health and `parley server sessions`' /sessions. */
export async function startServerOps(s: OpsSources): Promise<OpsServer> {
  const { config, location } = s;
  // Endpoints by client for `parley clients report`.
  const clientsSignedIn = () =>
    s.clientGate.summarize(function* () {
      for (const aor of location.aors()) for (const b of location.lookup(aor)) yield b.userAgent;
    });
  return startOpsServer({
    ...config.http,
    metrics: s.metrics,
    // `parley server sessions`: the live state, for holders of the store's secret only.
    routes: {
      '/sessions': sessionsRoute(await sharedSecret(s.db, SESSIONS_SECRET_KEY), (user) =>
        snapshotSessions(
          {
            serverId: config.serverId,
            aors: () => location.aors(),
            lookup: (aor) => location.lookup(aor),
            flow: (id) => s.transport.flow(id),
            subscriptions: () => s.presence.subscriptionsHeld(),
          },
          user,
        ),
      ),
    },
    health: (): HealthReport => ({
      status: s.draining() ? 'draining' : 'ok',
      role: config.role,
      serverId: config.serverId,
      flows: s.transport.flowCount,
      registeredEndpoints: location.registeredEndpoints,
      signedInUsers: s.signedInUsers(),
      activeUsers: s.metrics.activeUsers.count(),
      subscriptions: s.presence.subscriptionCount,
      security: config.security,
      clients: clientsSignedIn(),
      ...(s.otherWorkersEndpoints ? { otherWorkersEndpoints: s.otherWorkersEndpoints() } : {}),
    }),
  });
}

/** 1 when the store answers within two seconds (parley_store_up), else 0: it is asked its clock. */
async function storeAnswers(servers: ServerRepository): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<number>((resolve) => {
    timer = setTimeout(() => resolve(0), 2_000);
  });
  try {
    return await Promise.race([
      servers.clock().then(
        () => 1,
        () => 0,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The TLS certificate's expiry for parley_tls_certificate_expiry_seconds, read once at start. */
function certificateExpiry(config: ParleyConfig): (() => number | undefined) | undefined {
  if (!config.tls) return undefined;
  try {
    const at = Date.parse(new X509Certificate(readFileSync(config.tls.cert)).validTo) / 1000;
    return () => at;
  } catch {
    return undefined;
  }
}
