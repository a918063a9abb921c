import cluster, { type Worker } from 'node:cluster';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { ParleyConfig } from '../ops/config.js';
import { type HealthReport, type OpsServer, startOpsServer } from '../ops/http.js';
import { createMetrics, type ParleyMetrics } from '../ops/metrics.js';
import type { BindingBatch, BindingChannel } from '../registrar/worker-bindings.js';
import { openDatabase } from '../store/open.js';
import type { Database, FeedEvents, QueryResult, Sql } from '../store/sql.js';
import type { Listening } from '../transport/layer.js';
import { RoleStore } from './lifecycle.js';
import type { ParleyServer } from './parley-server.js';

/**
 * `server.workers` > 1 (docs/config.md): a standard server as an internal pool. The main
 * process owns the embedded store (PGlite is one session in one process) and serves it on
 * its socket; each worker is a front-end of the pool over that store, as front-ends of a
 * pool share PostgreSQL, but for its bindings: those stay out of the store, as a single
 * process's do, and the workers tell each other of them directly
 * (WorkerBindings, src/registrar/worker-bindings.ts; one message per worker every 5 ms,
 * over a loopback connection between each two workers). Requests for an endpoint connected to another worker are relayed to that worker
 * along the binding's flow-token Path (each worker has a relay listener of its own on
 * loopback); presence is published through the store. The store's change feed reaches the
 * workers through the main process (a socket client of the embedded store hears no
 * notifications; the owner does): it LISTENs for them and passes every payload on over IPC.
 *
 * node:cluster hands the SIP TCP, TLS and WebSocket connections to the workers in turn.
 * UDP is read by worker 1 alone: a datagram's retransmissions must reach the process that
 * holds its transaction (RFC 3261 17.2), and Node 20 has no SO_REUSEPORT for UDP to keep a
 * source on one worker. /metrics on the main process sums the workers' (prom-client's
 * AggregatorRegistry); /health sums their counts.
 */

/** The worker's number (1..N), when this process is a worker of a clustered server. */
export function clusterWorkerIndex(): number | undefined {
  const index = process.env.PARLEY_CLUSTER_WORKER;
  return cluster.isWorker && index ? Number(index) : undefined;
}

/** Private addresses the main process hands each worker: its relay and operations ports. */
export interface WorkerPorts {
  relay: number;
  http: number;
}

export function clusterWorkerPorts(): WorkerPorts | undefined {
  const text = process.env.PARLEY_CLUSTER_PORTS;
  if (!text || clusterWorkerIndex() === undefined) return undefined;
  const [relay, http] = text.split(',').map(Number);
  return { relay, http };
}

type ToWorker =
  | { parley: 'notify'; channel: string; payload: string }
  | { parley: 'close' }
  | { parley: 'bindings-peers'; ports: number[] }
  | { parley: 'bindings-gone'; from: string };

type ToPrimary =
  | { parley: 'listen'; channel: string }
  | { parley: 'bindings-hello'; port: number }
  | { parley: 'ready'; listening: Listening[]; httpUrl: string }
  | { parley: 'failed'; error: string };

function isParley<T extends { parley: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { parley?: unknown }).parley === 'string';
}

/**
 * A worker's view of the store: statements go to the main process's embedded store over
 * its socket; LISTEN is asked of the main process, whose notifications arrive over IPC.
 * NOTIFY is a statement like any other (the owner hears it, and passes it on).
 */
export class ClusterWorkerDatabase implements Database {
  readonly engine = 'postgres' as const;
  private readonly handlers = new Map<string, Set<(payload: string) => void>>();
  private readonly onMessage = (m: unknown) => {
    if (!isParley<ToWorker>(m) || m.parley !== 'notify') return;
    for (const h of this.handlers.get(m.channel) ?? []) {
      try {
        h(m.payload);
      } catch {
        // One listener's failure must not keep the others from hearing.
      }
    }
  };

  constructor(private readonly inner: Database) {
    process.on('message', this.onMessage);
  }

  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
    return this.inner.query<Row>(text, params);
  }

  exec(script: string): Promise<void> {
    return this.inner.exec(script);
  }

  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    return this.inner.transaction(fn);
  }

  /** The IPC channel to the main process does not drop while both live: no gap to report. */
  async listen(
    channel: string,
    onPayload: (payload: string) => void,
    _events?: FeedEvents,
  ): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      await sendToPrimary({ parley: 'listen', channel });
    }
    set.add(onPayload);
    return async () => {
      this.handlers.get(channel)?.delete(onPayload);
    };
  }

  notify(channel: string, payload: string): Promise<void> {
    return this.inner.notify(channel, payload);
  }

  async close(): Promise<void> {
    process.off('message', this.onMessage);
    await this.inner.close();
  }
}

function sendToPrimary(m: ToPrimary): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send) {
      reject(new Error('not a cluster worker'));
      return;
    }
    process.send(m, undefined, undefined, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * How long a connection to a worker's bindings listener has to present the secret. Long: a
 * worker busy starting (credentials loading on a loaded machine) can run its timers before
 * it reads the secret already waiting in its socket, and the dialing worker then has to make
 * the link again. The length bound, not this, keeps memory bounded.
 */
const HANDSHAKE_MS = 60_000;

/** What a worker's binding channel needs of its main process (tests give their own). */
export interface WorkerIpc {
  /** The cluster's secret, which a connection between two workers opens with. */
  secret: string;
  /** Tells the main process where this worker listens for the others. */
  announce(port: number): void;
  /** Hears where the workers that listened before this one listen. Returns the way to stop. */
  onPeers(listener: (ports: number[]) => void): () => void;
  /**
   * Hears of a worker that stopped or died (its server id, `workerServerId`): only then are
   * its bindings forgotten; a link that merely dropped is made again. Returns the way to stop.
   */
  onPeerGone(listener: (from: string) => void): () => void;
}

/** A worker's name in the servers table and in its bindings: the server's id and its number. */
export function workerServerId(serverId: string, index: number): string {
  return `${serverId}-w${index}`;
}

function mainProcessIpc(): WorkerIpc {
  const hear = <K extends ToWorker['parley']>(
    kind: K,
    listener: (m: Extract<ToWorker, { parley: K }>) => void,
  ) => {
    const onMessage = (m: unknown) => {
      if (isParley<ToWorker>(m) && m.parley === kind) listener(m as Extract<ToWorker, { parley: K }>);
    };
    process.on('message', onMessage);
    return () => {
      process.off('message', onMessage);
    };
  };
  return {
    secret: process.env.PARLEY_CLUSTER_SECRET ?? '',
    announce(port) {
      if (process.connected) process.send?.({ parley: 'bindings-hello', port } satisfies ToPrimary);
    },
    onPeers: (listener) => hear('bindings-peers', (m) => listener(m.ports)),
    onPeerGone: (listener) => hear('bindings-gone', (m) => listener(m.from)),
  };
}

/** A link this worker dialed drops: it dials again after this, doubling up to LINK_RETRY_MAX_MS. */
const LINK_RETRY_MS = 100;
const LINK_RETRY_MAX_MS = 5_000;

/** What the channel says of its links (the worker's log). */
export interface BindingLinkLog {
  warn(fields: object, message: string): void;
  info(fields: object, message: string): void;
}

/**
 * In a worker: its bindings reach each other worker over a loopback connection of their own
 * (one JSON line per batch), not through the main process: node's IPC cost 18 us of CPU per
 * binding over the three processes (serialized, parsed and serialized again by the main
 * process, parsed), a third of a REGISTER's. The worker listens on a port of its own and
 * tells the main process, which answers with the ports of the workers that listened before;
 * this one connects to each of them. A connection opens with the server's cluster secret
 * (PARLEY_CLUSTER_SECRET, which only the main process's children hear of): nobody else on
 * the host can tell a worker where a user is.
 *
 * A link that drops (a reset, an error) while both workers live is made again by the worker
 * that dialed it, after 0.1 s and then twice as long each time up to 5 s; each side sends its
 * snapshot again when it is back, so what changed meanwhile is not lost. The other worker's
 * bindings are kept meanwhile and forgotten only when that worker is gone: the main process
 * says so when it exits, and a dial refused means its listener closed with it.
 */
export function workerBindingChannel(
  ipc: WorkerIpc = mainProcessIpc(),
  log?: BindingLinkLog,
): BindingChannel {
  const { secret } = ipc;
  // An empty secret would admit anyone who sends a blank line.
  if (secret.length < 16)
    throw new Error('a worker needs the cluster secret (PARLEY_CLUSTER_SECRET) from its main process');
  const sockets = new Set<Socket>();
  const line = (batch: BindingBatch) => `${JSON.stringify(batch)}\n`;
  return {
    send(batch) {
      if (sockets.size === 0) return;
      const text = line(batch);
      for (const socket of sockets) socket.write(text);
    },
    open({ onPeer, onBatch, onGone }) {
      let stopped = false;
      /** Workers the main process said are gone (a dial to them is not made again). */
      const departed = new Set<string>();
      /** Links this worker dialed, by the port dialed: the peer's id once it spoke, and the retry. */
      const dialed = new Map<number, { from?: string; delay: number; timer?: NodeJS.Timeout }>();
      const forget = (from: string) => {
        if (!stopped) onGone(from);
      };
      /** `port` set: this worker dialed the link (and makes it again if it drops). */
      const follow = (socket: Socket, port?: number) => {
        socket.setNoDelay(true);
        socket.setEncoding('utf8');
        let from: string | undefined;
        // The line not yet ended, in the pieces it came in: joined once, when its newline comes
        // (appending to one string and searching it from the start again for each 64 KiB read
        // was quadratic: a batch of 50,000 sign-outs, 3 MB, cost the other worker 1.8 s).
        let pending: string[] = [];
        let pendingLength = 0;
        let admitted = port !== undefined;
        const admit = () => {
          admitted = true;
          sockets.add(socket);
          onPeer({ send: (batch) => socket.write(line(batch)) });
        };
        if (port !== undefined) {
          socket.write(`${secret}\n`);
          admit();
        } else {
          // Whoever connects has HANDSHAKE_MS and the secret's length to say it, no more.
          socket.setTimeout(HANDSHAKE_MS, () => socket.destroy());
        }
        socket.on('data', (chunk: string) => {
          let start = 0;
          let cut = chunk.indexOf('\n');
          while (cut >= 0) {
            const tail = chunk.slice(start, cut);
            const text = pending.length === 0 ? tail : pending.join('') + tail;
            pending = [];
            pendingLength = 0;
            start = cut + 1;
            cut = chunk.indexOf('\n', start);
            if (!admitted) {
              if (!sameSecret(text, secret)) {
                socket.destroy();
                return;
              }
              socket.setTimeout(0);
              admit();
            } else {
              let batch: BindingBatch;
              try {
                batch = JSON.parse(text) as BindingBatch;
              } catch {
                // Not a batch of ours: the connection is dropped (made again if ours).
                socket.destroy();
                return;
              }
              if (from === undefined) {
                from = batch.from;
                // A worker started again under the name of one gone.
                departed.delete(from);
                const link = port !== undefined ? dialed.get(port) : undefined;
                if (link) {
                  link.from = from;
                  link.delay = LINK_RETRY_MS;
                }
              }
              onBatch(batch);
            }
          }
          if (start < chunk.length) {
            pending.push(start === 0 ? chunk : chunk.slice(start));
            pendingLength += chunk.length - start;
          }
          // Before the secret, no more than its length without a newline.
          if (!admitted && pendingLength > secret.length) socket.destroy();
        });
        socket.on('error', () => socket.destroy());
        socket.on('close', () => {
          sockets.delete(socket);
          if (stopped || !admitted) return;
          if (port !== undefined && !(from !== undefined && departed.has(from))) {
            log?.warn(
              { peer: from ?? `port ${port}` },
              "the link to another worker's bindings dropped; making it again",
            );
            redial(port);
          }
        });
      };
      const dial = (port: number) => {
        const link = dialed.get(port);
        if (stopped || !link || (link.from !== undefined && departed.has(link.from))) return;
        const socket = connect({ host: '127.0.0.1', port });
        socket.once('connect', () => {
          socket.removeAllListeners('error');
          follow(socket, port);
          if (link.from !== undefined)
            log?.info({ peer: link.from }, "the link to another worker's bindings is back");
        });
        socket.once('error', (err: NodeJS.ErrnoException) => {
          socket.destroy();
          if (stopped) return;
          if (err.code === 'ECONNREFUSED') {
            // Nothing listens there any more: that worker is gone with its listener.
            dialed.delete(port);
            if (link.from !== undefined) forget(link.from);
          } else redial(port);
        });
      };
      const redial = (port: number) => {
        const link = dialed.get(port);
        if (!link || stopped) return;
        clearTimeout(link.timer);
        link.timer = setTimeout(() => dial(port), link.delay);
        link.delay = Math.min(link.delay * 2, LINK_RETRY_MAX_MS);
      };
      const server = createServer((socket) => follow(socket));
      const stopHearing = ipc.onPeers((ports) => {
        for (const port of ports) {
          if (dialed.has(port)) continue;
          dialed.set(port, { delay: LINK_RETRY_MS });
          dial(port);
        }
      });
      const stopHearingGone = ipc.onPeerGone((from) => {
        departed.add(from);
        for (const [port, link] of dialed) {
          if (link.from !== from) continue;
          clearTimeout(link.timer);
          dialed.delete(port);
        }
        forget(from);
      });
      // Exclusive: in a cluster worker, listen(0) otherwise goes through the main process and
      // every worker gets the same port, one handle whose connections node:cluster deals out
      // in turn: a worker dialing "another" could be handed its own connection.
      server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () =>
        ipc.announce((server.address() as AddressInfo).port),
      );
      return () => {
        stopped = true;
        stopHearing();
        stopHearingGone();
        for (const link of dialed.values()) clearTimeout(link.timer);
        server.close();
        for (const socket of sockets) socket.end();
      };
    },
  };
}

function sameSecret(given: string, secret: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The main process's part in WorkerBindings: a worker that listens for the others' bindings
 * is told who listened before it (it connects to each); one that stopped is left out.
 */
function bindingPeers(workers: Map<number, { worker: Worker }>) {
  const listening = new Map<number, number>();
  return {
    hello(index: number, port: number): void {
      const ports = [...listening].filter(([other]) => other !== index).map(([, p]) => p);
      listening.set(index, port);
      const worker = workers.get(index)?.worker;
      if (worker?.isConnected()) worker.send({ parley: 'bindings-peers', ports } satisfies ToWorker);
    },
    /** The worker stopped or died: the others forget its bindings (a dropped link alone does not). */
    stopped(index: number, from: string): void {
      listening.delete(index);
      for (const [other, { worker }] of workers)
        if (other !== index && worker.isConnected())
          worker.send({ parley: 'bindings-gone', from } satisfies ToWorker);
    },
  };
}

/** In a worker: the main process's /metrics asks for this registry's series (and sums them). */
export function shareWorkerMetrics(registry: Registry): void {
  // The constructor installs prom-client's request listener in this worker.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
}

/** A worker tells the main process it serves (or could not start). */
export function reportWorkerReady(listening: Listening[], httpUrl: string): Promise<void> {
  return sendToPrimary({ parley: 'ready', listening, httpUrl });
}

export function reportWorkerFailed(err: unknown): Promise<void> {
  return sendToPrimary({ parley: 'failed', error: err instanceof Error ? err.message : String(err) });
}

/**
 * In a worker: close the server when the main process says so or goes away. SIGINT and
 * SIGTERM (a terminal's Ctrl-C reaches the whole process group) are left to the main
 * process, which stops the workers before the store they write to.
 */
export function followPrimary(server: ParleyServer): Promise<void> {
  return new Promise((resolve) => {
    const ignore = () => {};
    process.on('SIGINT', ignore);
    process.on('SIGTERM', ignore);
    let closing = false;
    const close = () => {
      if (closing) return;
      closing = true;
      server
        .close()
        .catch(() => undefined)
        .finally(() => resolve());
    };
    process.on('message', (m: unknown) => {
      if (isParley<ToWorker>(m) && m.parley === 'close') close();
    });
    process.once('disconnect', close);
  });
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const HEALTH_SUMS = ['flows', 'registeredEndpoints', 'signedInUsers', 'activeUsers', 'subscriptions'];

/**
 * The main process of a clustered standard server: owns and serves the embedded store,
 * passes its notifications on, forks the workers (the same command line, marked by the
 * environment) and answers /metrics and /health for all of them.
 */
export async function startClusterPrimary(config: ParleyConfig, log: Logger): Promise<ParleyServer> {
  // A server on PostgreSQL has no workers (config refuses server.workers with database.url).
  const store = await RoleStore.own(await openDatabase({ dataDir: config.database.dataDir }), config);
  const db = store.db;
  const workers = new Map<number, { worker: Worker; httpUrl?: string }>();
  const bindings = bindingPeers(workers);
  const secret = randomBytes(24).toString('hex');
  let ops: OpsServer | undefined;
  let closed = false;
  const stopWorkers = async () => {
    const exits = [...workers.values()].map(
      ({ worker }) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          const killer = setTimeout(() => worker.process.kill('SIGKILL'), 20_000);
          worker.once('exit', () => {
            clearTimeout(killer);
            resolve();
          });
          worker.send({ parley: 'close' } satisfies ToWorker);
        }),
    );
    await Promise.all(exits);
  };
  const close = async () => {
    if (closed) return;
    closed = true;
    await stopWorkers();
    await ops?.close();
    await store.close();
  };
  try {
    await store.serve(config.database.dataDir);
    const listened = new Set<string>();
    const listenFor = async (channel: string) => {
      if (listened.has(channel)) return;
      listened.add(channel);
      store.cleanups.push(
        await db.listen(channel, (payload) => {
          for (const { worker } of workers.values())
            if (worker.isConnected()) worker.send({ parley: 'notify', channel, payload } satisfies ToWorker);
        }),
      );
    };
    const ready = new Map<number, { listening: Listening[]; httpUrl: string }>();
    let startedAll = false;
    let failStart: (err: Error) => void = () => {};
    let allReady: () => void = () => {};
    const started = new Promise<void>((resolve, reject) => {
      allReady = resolve;
      failStart = reject;
    });
    const restartDelay = new Map<number, number>();
    // A worker that dies after it served is started again (same index: worker 1 keeps UDP);
    // one that keeps dying soon after starting waits longer each time, up to 30 s.
    const spawn = async (index: number): Promise<void> => {
      const ports = [await freeLoopbackPort(), await freeLoopbackPort()].join(',');
      const bornAt = Date.now();
      const worker = cluster.fork({
        PARLEY_CLUSTER_WORKER: String(index),
        PARLEY_CLUSTER_PORTS: ports,
        PARLEY_CLUSTER_SECRET: secret,
      });
      workers.set(index, { worker });
      worker.on('message', (m: unknown) => {
        if (!isParley<ToPrimary>(m)) return;
        if (m.parley === 'bindings-hello') {
          bindings.hello(index, m.port);
        } else if (m.parley === 'listen') {
          listenFor(m.channel).catch((err: unknown) =>
            log.error({ err, channel: m.channel }, 'could not listen for a worker'),
          );
        } else if (m.parley === 'ready') {
          ready.set(index, { listening: m.listening, httpUrl: m.httpUrl });
          const w = workers.get(index);
          if (w?.worker === worker) w.httpUrl = m.httpUrl;
          if (ready.size === config.server.workers) allReady();
        } else if (m.parley === 'failed') {
          if (!startedAll) failStart(new Error(`worker ${index} could not start: ${m.error}`));
          else log.error({ worker: index, error: m.error }, 'a restarted worker could not start');
        }
      });
      worker.on('exit', (code, signal) => {
        if (workers.get(index)?.worker === worker)
          bindings.stopped(index, workerServerId(config.serverId, index));
        if (closed) return;
        if (!startedAll) {
          failStart(new Error(`worker ${index} exited (${code ?? signal}) while starting`));
          return;
        }
        const quick = Date.now() - bornAt < 60_000;
        const delay = quick ? Math.min((restartDelay.get(index) ?? 500) * 2, 30_000) : 1_000;
        restartDelay.set(index, delay);
        log.error({ worker: index, code, signal, restartInMs: delay }, 'a worker stopped; starting it again');
        setTimeout(() => {
          if (!closed) spawn(index).catch((err: unknown) => log.error({ err }, 'could not restart a worker'));
        }, delay).unref();
      });
    };
    for (let i = 1; i <= config.server.workers; i++)
      spawn(i).catch((err: unknown) => failStart(err as Error));
    await started;
    startedAll = true;
    const first = ready.get(1);
    if (!first) throw new Error('worker 1 did not report its listeners');
    const aggregator = new AggregatorRegistry();
    const base = createMetrics({ processMetrics: false });
    const metrics: ParleyMetrics = {
      ...base,
      render: () => aggregator.clusterMetrics(),
      contentType: aggregator.contentType,
    };
    ops = await startOpsServer({
      ...config.http,
      metrics,
      health: async (): Promise<HealthReport> => {
        const each = [...workers.entries()];
        const reports = await Promise.all(
          each.map(async ([, { httpUrl }]) => {
            if (!httpUrl) return undefined;
            const res = await fetch(`${httpUrl}/health`, { signal: AbortSignal.timeout(2_000) }).catch(
              () => undefined,
            );
            return res ? ((await res.json().catch(() => undefined)) as HealthReport | undefined) : undefined;
          }),
        );
        const live = reports.filter((r): r is HealthReport => r !== undefined);
        const report: HealthReport = {
          status:
            live.length < reports.length
              ? 'unhealthy'
              : live.some((r) => r.status === 'draining')
                ? 'draining'
                : 'ok',
          role: config.role,
          serverId: config.serverId,
          workers: live.length,
          security: config.security,
        };
        for (const key of HEALTH_SUMS) report[key] = live.reduce((n, r) => n + Number(r[key] ?? 0), 0);
        // Each worker's own counts too (which worker holds how many endpoints and connections).
        report.perWorker = reports.map((r, i) => ({
          worker: each[i][0],
          pid: each[i][1].worker.process.pid,
          status: r?.status ?? 'unreachable',
          ...Object.fromEntries(
            [...HEALTH_SUMS, 'otherWorkersEndpoints'].map((key) => [key, Number(r?.[key] ?? 0)]),
          ),
        }));
        return report;
      },
    });
    const server: ParleyServer = {
      config,
      // Worker 1's listeners are everyone's (the cluster shares them), less its own relay.
      listening: first.listening.filter((l) => l.name !== 'relay'),
      httpUrl: ops.url,
      metrics,
      db,
      drained: new Promise<void>(() => {}),
      async drain() {
        log.warn('drain is for pool front-ends; stop the server instead');
      },
      close,
    };
    log.info(
      { workers: config.server.workers, http: ops.url },
      'Parley server started with one SIP worker process per core',
    );
    return server;
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}

/**
 * The life of a worker process: start its server, tell the main process, serve until the
 * main process says stop (or goes), then exit; a failure to start is reported, not thrown.
 */
export async function runClusterWorker(start: () => Promise<ParleyServer>): Promise<never> {
  let server: ParleyServer;
  try {
    server = await start();
  } catch (err) {
    await reportWorkerFailed(err).catch(() => undefined);
    process.exit(1);
  }
  await reportWorkerReady(server.listening, server.httpUrl);
  await followPrimary(server);
  process.exit(0);
}
