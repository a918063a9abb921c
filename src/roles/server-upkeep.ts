import type { LocationTable } from '../registrar/location.js';
import { UsageRecorder } from '../reports/usage-recorder.js';
import { hostReference } from '../sip/host.js';
import type { HomeRepository } from '../store/homes.js';
import { PublicationRepository } from '../store/publications.js';
import { RegistrationRepository } from '../store/registrations.js';
import { ServerRepository } from '../store/servers.js';
import type { Database } from '../store/sql.js';
import { UsageRepository } from '../store/usage.js';
import type { Listening } from '../transport/layer.js';
import type { ServerBase } from './server-base.js';

/**
 * The daily usage rollup (parley report usage) of a home server: counted here, added to
 * the store each minute, written a last time at close.
 */
export function startUsageRollup(base: ServerBase, location: LocationTable): UsageRecorder | undefined {
  const { config, log } = base;
  if (config.role !== 'standard' && config.role !== 'frontend') return undefined;
  const usage = new UsageRecorder({
    repo: new UsageRepository(base.db),
    home: config.home ?? base.domain,
    serverId: config.serverId,
    signedIn: () => location.signedInUsers,
    log,
  });
  usage.start();
  base.cleanups.push(() =>
    usage.close().catch((err: unknown) => log.warn({ err }, 'usage rollup not written')),
  );
  return usage;
}

/** How often a slice of the location table is swept for expired bindings. */
const BINDING_SWEEP_MS = 100;
/** The slices: the whole table in about 5 s, at least this many AORs a slice. */
const BINDING_SWEEP_SLICES = 50;
const BINDING_SWEEP_MIN = 2_000;

/**
 * Expired bindings leave the location table within about 5 s, a slice every 100 ms (2,000
 * AORs, about 1 ms): never the whole table at once on the one thread. Returns the stop.
 */
export function sweepExpiredBindings(location: LocationTable): () => void {
  const sweep = setInterval(
    () =>
      location.expireSome(Math.max(BINDING_SWEEP_MIN, Math.ceil(location.aorCount / BINDING_SWEEP_SLICES))),
    BINDING_SWEEP_MS,
  );
  sweep.unref();
  return () => clearInterval(sweep);
}

/**
 * A standard server is a home by itself; a pool's home (its load balancer's address) is
 * declared by the administrator, and directors and edges are nobody's home.
 */
export async function declareHome(base: ServerBase, homes: HomeRepository, address: string): Promise<void> {
  const { config } = base;
  if (config.role === 'standard') {
    await homes.upsertHome({ name: config.home ?? base.domain, kind: 'standard', address });
  } else if (config.role === 'frontend' && config.home && !(await homes.getHome(config.home))) {
    // The first front-end declares its pool; the administrator points it at the load balancer.
    await homes.upsertHome({ name: config.home, kind: 'pool', address });
  }
}

/** A running server in the servers table, kept alive by its heartbeat. */
export interface ServerEntry {
  readonly servers: ServerRepository;
  stopHeartbeat(): void;
}

/**
 * Enters the server (of any role: the edge's too) in the servers table and beats every
 * HEARTBEAT_MS; a member of a pool also sweeps up after members that stopped beating.
 */
export async function enterServer(
  base: Pick<ServerBase, 'config' | 'db' | 'log' | 'domain' | 'pool'>,
  address: string,
  healthUrl: string,
): Promise<ServerEntry> {
  const { config, db, log } = base;
  const servers = new ServerRepository(db);
  await servers.register({
    id: config.serverId,
    role: config.role,
    home: config.home ?? base.domain,
    address,
    healthUrl,
  });
  const heartbeat = setInterval(() => {
    servers.heartbeat(config.serverId).catch((err: unknown) => log.warn({ err }, 'heartbeat failed'));
    if (!base.pool) return;
    // A front-end that stopped beating (killed) leaves bindings nobody can reach: clean them up.
    sweepDeadServers(db, servers, config.serverId).catch((err: unknown) => log.warn({ err }, 'sweep failed'));
  }, HEARTBEAT_MS);
  heartbeat.unref();
  return { servers, stopHeartbeat: () => clearInterval(heartbeat) };
}

/** Last resort: a promise rejected on the network path is logged, never a crash of the server. */
export function logUnhandledRejections(base: ServerBase): void {
  const onUnhandled = (reason: unknown) => base.log.error({ err: reason }, 'unhandled rejection');
  process.on('unhandledRejection', onUnhandled);
  base.cleanups.push(() => {
    process.off('unhandledRejection', onUnhandled);
  });
}

/** The address of this server's home entry and servers row: advertised, else its TCP listener. */
export function homeAddress(listening: Listening[], advertise?: { host: string; port?: number }): string {
  const tcp = listening.find((l) => l.transport === 'tcp') ?? listening[0];
  const host =
    advertise?.host ?? (tcp && tcp.host !== '0.0.0.0' && tcp.host !== '::' ? tcp.host : '127.0.0.1');
  const port = advertise?.port ?? tcp?.port ?? 5060;
  return `sip:${hostReference(host)}:${port};transport=${tcp?.transport ?? 'tcp'}`;
}

const HEARTBEAT_MS = 5_000;
/** A server whose heartbeat is older than this is dead: three missed beats and some slack. */
const DEAD_AFTER_MS = 20_000;

/** Marks silent servers down and drops the bindings and presence they held. */
async function sweepDeadServers(db: Database, servers: ServerRepository, self: string): Promise<void> {
  const dead = await servers.markStaleDown(new Date(Date.now() - DEAD_AFTER_MS));
  const registrations = new RegistrationRepository(db);
  const publications = new PublicationRepository(db);
  for (const id of dead) {
    if (id === self) continue;
    await registrations.removeForServer(id);
    await publications.removeForServer(id);
  }
}
