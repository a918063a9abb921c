import type { Logger } from 'pino';
import type { ParleyConfig } from '../ops/config.js';
import { componentLogger, createLogger } from '../ops/log.js';
import { LocationTable } from '../registrar/location.js';
import { WorkerBindings } from '../registrar/worker-bindings.js';
import { openDatabase } from '../store/open.js';
import {
  ClusterWorkerDatabase,
  clusterWorkerIndex,
  clusterWorkerPorts,
  shareWorkerMetrics,
  startClusterPrimary,
  workerServerId,
} from './cluster.js';
import { startEdge } from './edge.js';
import { RoleStore } from './lifecycle.js';
import type { ParleyServer } from './parley-server.js';
import { followAccounts } from './server-accounts.js';
import type { ServerBase } from './server-base.js';
import { createServerMetrics, startServerOps } from './server-ops.js';
import { Draining, runningServer } from './server-shutdown.js';
import { type SipStack, startSipStack } from './server-sip.js';
import {
  declareHome,
  enterServer,
  homeAddress,
  logUnhandledRejections,
  startUsageRollup,
  sweepExpiredBindings,
} from './server-upkeep.js';

export type { ParleyServer } from './parley-server.js';

export interface StartServerOptions {
  log?: Logger;
}

/**
 * Starts a Parley server in the role its configuration names. The standard role is the
 * all-in-one home: registrar, presence, IM and proxy over the embedded store. The pieces
 * of a home server's start, in order: its store, the location table and metrics, the
 * accounts that follow the store (server-accounts.ts), the SIP layers (server-sip.ts), its
 * home and servers entries and timers (server-upkeep.ts), the operations endpoint
 * (server-ops.ts), and the drain and close that undo them (server-shutdown.ts).
 */
export async function startServer(
  configured: ParleyConfig,
  options: StartServerOptions = {},
): Promise<ParleyServer> {
  if (configured.role === 'edge') return startEdge(configured, options.log);
  const workerIndex = clusterWorkerIndex();
  const given = options.log ?? createLogger(configured);
  if (configured.server.workers > 1 && workerIndex === undefined)
    return startClusterPrimary(configured, given);
  const log = workerIndex !== undefined ? given.child({ worker: workerIndex }) : given;
  // A worker of a clustered server (src/roles/cluster.ts) is a front-end of an internal pool.
  const config = workerIndex !== undefined ? workerConfig(configured, workerIndex) : configured;
  const store = await openServerStore(config, workerIndex);
  try {
    await store.serve(config.database.dataDir);
    const base: ServerBase = {
      config,
      domain: config.domain.toLowerCase(),
      log,
      sipLog: componentLogger(log, 'sip'),
      db: store.db,
      cleanups: store.cleanups,
      pool: config.role === 'frontend' || workerIndex !== undefined,
      workerIndex,
    };
    return await startHomeServer(base, store, configured.serverId);
  } catch (err) {
    await store.abandon();
    throw err;
  }
}

/** The store of a home server, or of a worker (the cluster primary serves it the data folder's). */
async function openServerStore(config: ParleyConfig, workerIndex: number | undefined): Promise<RoleStore> {
  if (workerIndex !== undefined)
    return RoleStore.own(
      new ClusterWorkerDatabase(await openDatabase({ dataDir: config.database.dataDir, migrate: false })),
      config,
      false,
    );
  return RoleStore.own(
    await openDatabase({ dataDir: config.database.dataDir, url: config.database.url }),
    config,
  );
}

/** The layers of a standard server, front-end, director or cluster worker, over its open store. */
async function startHomeServer(
  base: ServerBase,
  store: RoleStore,
  metricsServerId: string,
): Promise<ParleyServer> {
  const { config, log } = base;
  const location = new LocationTable(Date.now, {
    connectionGraceMs: config.registrar.connectionGraceSeconds * 1000,
  });
  // Set once the SIP layers exist; the metrics read them only when scraped.
  let sip: SipStack | undefined;
  // A user with endpoints on two workers counts once over the workers, as in one process.
  const signedInUsers = () =>
    sip?.mirror instanceof WorkerBindings ? sip.mirror.usersCountedHere() : location.signedInUsers;
  const metrics = createServerMetrics(config, metricsServerId, base.db, location, {
    signedInUsers,
    connections: () => sip?.transport.connectionCount ?? 0,
    serverTransactions: () => sip?.transactions.serverCount ?? 0,
    archiveBacklog: () => sip?.archive?.backlog ?? 0,
  });
  if (base.workerIndex !== undefined) shareWorkerMetrics(metrics.registry);
  const usage = startUsageRollup(base, location);
  const userActive = (aor: string) => {
    metrics.activeUsers.touch(aor);
    usage?.userActive(aor);
  };
  // Account changes are followed from here on, before the SIP layers exist: a user disabled
  // in that window has no subscription or connection yet, so there is nothing to end.
  const accounts = await followAccounts(base, location, {
    endSubscriptions: async (aor, removed, ownReason) =>
      sip ? sip.presence.signOutUser(aor, removed, ownReason) : 0,
    subscriptionParties: () => sip?.presence.subscriptionParties() ?? [],
    closeFlow: (id) => sip?.transport.flow(id)?.close(),
  });
  const draining = new Draining();
  sip = await startSipStack(base, accounts, location, metrics, {
    userActive,
    messageRouted: (bytes) => usage?.messageRouted(bytes),
    flowClosed: () => draining.flowClosed(),
  });
  const stopSweep = sweepExpiredBindings(location);
  const shared = sip.mirror;
  const address = homeAddress(sip.listening, sip.advertise);
  await declareHome(base, accounts.homes, address);
  const ops = await startServerOps({
    config,
    db: base.db,
    metrics,
    location,
    transport: sip.transport,
    presence: sip.presence,
    clientGate: sip.clientGate,
    draining: () => draining.active,
    signedInUsers,
    otherWorkersEndpoints: shared instanceof WorkerBindings ? () => shared.remoteCount : undefined,
  });
  const entry = await enterServer(base, address, `${ops.url}/health`);
  logUnhandledRejections(base);
  const server = runningServer({ base, store, sip, metrics, ops, entry, draining, stopSweep });
  await store.followDrainRequests(server, log);
  log.info(
    {
      domain: base.domain,
      listening: sip.listening.map((l) => `${l.transport}://${l.host}:${l.port}`),
      http: ops.url,
    },
    'Parley server started',
  );
  return server;
}

/**
 * A worker's own settings: its name in the servers table, its operations port, and UDP on
 * worker 1 only (src/roles/cluster.ts says why).
 */
function workerConfig(config: ParleyConfig, index: number): ParleyConfig {
  const ports = clusterWorkerPorts();
  if (!ports) throw new Error('a cluster worker started without its ports');
  const listen = { ...config.listen };
  if (index !== 1) delete listen.udp;
  return {
    ...config,
    serverId: workerServerId(config.serverId, index),
    listen,
    http: { host: '127.0.0.1', port: ports.http },
  };
}
