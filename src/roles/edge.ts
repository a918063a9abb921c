import type { Logger } from 'pino';
import { EdgeIdentity, type EdgeSide } from '../edge/identity.js';
import { PartnerDirectory } from '../edge/partners.js';
import { RefusalLog } from '../edge/refusals.js';
import { EdgeRouter } from '../edge/router.js';
import { TopologySeal } from '../edge/seal.js';
import { ConfigError, type ParleyConfig, parseAdvertise } from '../ops/config.js';
import { type OpsServer, startOpsServer } from '../ops/http.js';
import { componentLogger, createLogger } from '../ops/log.js';
import { createMetrics } from '../ops/metrics.js';
import { FlowTokens } from '../proxy/flow-token.js';
import { DialogRouteSigner } from '../proxy/record-route.js';
import { createTag } from '../sip/ids.js';
import { createErrorResponseFromPartial } from '../sip/response.js';
import { FEDERATION_CHANNEL, FederationRepository } from '../store/federation.js';
import { openDatabase } from '../store/open.js';
import { sharedSecret } from '../store/settings.js';
import { TransactionLayer } from '../transaction/layer.js';
import { TimerWheel } from '../transaction/timers.js';
import type { Flow } from '../transport/flow.js';
import { type NamedListener, TransportLayer } from '../transport/layer.js';
import { RoleStore, readTls } from './lifecycle.js';
import type { ParleyServer } from './parley-server.js';
import { Draining } from './server-shutdown.js';
import { enterServer } from './server-upkeep.js';

/** Inside servers may send large bodies (contact lists, presence documents) the outside may not. */
const INSIDE_MAX_MESSAGE_SIZE = 65_535;

/**
 * The edge role: remote users over TLS and WSS (`listen.tls`, `listen.wss`), partners'
 * edges over mutual TLS (`listen.federation`), and the servers inside on `listen.internal`
 * and the next hop `edge.next`. It holds no user data: the federation policy comes from the
 * store and is reloaded when FEDERATION_CHANNEL says it changed (docs/edge.md).
 */
export async function startEdge(
  config: ParleyConfig,
  log: Logger = createLogger(config),
): Promise<ParleyServer> {
  const sipLog = componentLogger(log, 'sip');
  const edgeLog = componentLogger(log, 'edge');
  const next = config.edge.next;
  const where = config.file ?? 'config';
  if (!next) {
    throw new ConfigError(
      'an edge needs its inside next hop: set edge.next (e.g. sip:director.internal:5060;transport=tcp)',
      'edge.next',
      where,
    );
  }
  if (!config.listen.internal) {
    throw new ConfigError(
      'an edge needs a listener for the servers inside: set listen.internal (e.g. 10.0.0.5:5070)',
      'listen.internal',
      where,
    );
  }
  const store = await RoleStore.own(
    await openDatabase({ dataDir: config.database.dataDir, url: config.database.url }),
    config,
  );
  const { db, cleanups } = store;
  try {
    await store.serve(config.database.dataDir);
    const domain = config.domain.toLowerCase();

    const dialled = new Map<string, EdgeSide>();
    const sideOf = (flow: Flow): EdgeSide => {
      if (flow.listener === 'internal') return 'inside';
      if (flow.listener === 'federation') return 'federation';
      if (flow.listener !== undefined) return 'outside';
      return dialled.get(flow.id) ?? 'inside';
    };

    // security: high: the inside servers reach the edge over mutual TLS, not TCP.
    const named: NamedListener[] = [
      {
        name: 'internal',
        transport: config.highSecurity ? 'tls' : 'tcp',
        requireClientCert: config.highSecurity,
        at: config.listen.internal,
        maxMessageSize: INSIDE_MAX_MESSAGE_SIZE,
      },
    ];
    if (config.listen.federation) {
      named.push({
        name: 'federation',
        transport: 'tls',
        at: config.listen.federation,
        requireClientCert: true,
      });
    }
    const { internal: _internal, federation: _federation, ...outside } = config.listen;
    const transport = new TransportLayer({
      listen: outside,
      namedListeners: named,
      tls: readTls(config),
      dialTlsOnly: config.highSecurity,
      maxMessageSize: config.edge.maxMessageSize,
      log: sipLog,
      limits: config.limits,
      onConnectionRefused: (reason) => metrics.connectionsRefused.inc(reason),
      onConnectionTimedOut: (reason) => metrics.connectionsTimedOut.inc(reason),
    });
    const timers = new TimerWheel();
    timers.onError = (err) => sipLog.error({ err }, 'timer callback failed');
    const transactions = new TransactionLayer({
      timers,
      log: sipLog,
      onSend: (m) => {
        if (!m.isRequest) metrics.responsesSent.inc(m.status);
      },
      onFinal: (st) => metrics.transactionLatency.observeSince(st.startedAt),
      onAbandoned: () => metrics.failures.inc('internal'),
    });
    const metrics = createMetrics({
      labels: { server: config.serverId, role: config.role },
      sources: {
        registeredEndpoints: () => 0,
        signedInUsers: () => 0,
        connections: () => transport.connectionCount,
        serverTransactions: () => transactions.serverCount,
      },
    });

    const repository = new FederationRepository(db);
    const partners = new PartnerDirectory({
      ownDomain: domain,
      load: () => repository.list(),
      dnsServers: config.federation.dnsServers,
      log: edgeLog,
    });
    await partners.reload();
    cleanups.push(
      await db.listen(FEDERATION_CHANNEL, () => {
        void partners.reload().then(() => edgeLog.info('federation policy reloaded'));
      }),
    );

    let router!: EdgeRouter;
    const draining = new Draining();
    const listening = await transport.start({
      onMessage: (message, flow) => {
        if (message.isRequest) metrics.requestsReceived.inc(message.method);
        transactions.receive(message, flow);
      },
      onParseError: (flow, status, reason, partial) => {
        metrics.failures.inc('parse');
        if (status === 413 && sideOf(flow) !== 'inside') {
          metrics.edgeRefusals.inc('too_large');
          refusals.report('too_large', flow.remoteAddress, undefined, reason);
        }
        const response = createErrorResponseFromPartial(
          { status, reason, partial: partial as never },
          { toTag: createTag() },
        );
        if (response) flow.send(response.toBuffer());
      },
      onFlowClosed: (flow) => {
        // A remote user's own connection: its home drops the bindings made through it.
        if (flow.authenticated.size > 0) router.remoteUserGone(flow);
        dialled.delete(flow.id);
        draining.flowClosed();
      },
    });
    const refusals = new RefusalLog(edgeLog);
    const local = new EdgeIdentity(
      domain,
      listening,
      parseAdvertise(config.advertise),
      config.serverId,
      sideOf,
    );
    router = new EdgeRouter({
      domain,
      local,
      transactions,
      transport,
      partners,
      next,
      flowTokens: new FlowTokens(await sharedSecret(db, 'flow_token_secret'), config.serverId),
      routeSigner: new DialogRouteSigner(await sharedSecret(db, 'record_route_secret')),
      seal: new TopologySeal(await sharedSecret(db, 'edge_topology_secret')),
      limits: config.edge,
      refusals,
      onRefusal: (reason) => metrics.edgeRefusals.inc(reason),
      sideOf,
      dialled: (flow, side) => dialled.set(flow.id, side),
      log: edgeLog,
    });
    transactions.setUser(router);

    const ops: OpsServer = await startOpsServer({
      ...config.http,
      metrics,
      health: () => ({
        status: draining.active ? 'draining' : 'ok',
        role: config.role,
        serverId: config.serverId,
        flows: transport.flowCount,
        federation: partners.policy.describe(),
      }),
    });
    const outsideTls = listening.find((l) => l.transport === 'tls' && !l.name) ?? listening[0];
    const { servers, stopHeartbeat } = await enterServer(
      { config, db, log, domain, pool: false },
      `sip:${config.advertise ?? `${outsideTls.host}:${outsideTls.port}`};transport=${outsideTls.transport}`,
      `${ops.url}/health`,
    );

    let closed = false;
    const server: ParleyServer = {
      config,
      listening,
      httpUrl: ops.url,
      metrics,
      db,
      drained: draining.drained,
      async drain(timeoutMs = 30_000) {
        if (draining.active) return draining.drained;
        draining.active = true;
        log.info('draining: no new connections, open connections closed');
        await servers.setState(config.serverId, 'draining').catch(() => undefined);
        transport.stopAccepting();
        // Remote users' and partners' connections first: the notices of remote users' going
        // (router.remoteUserGone) leave through the connections inside, closed after them.
        await draining.closeFlows(transport, timeoutMs, {
          pick: (flow) => sideOf(flow) !== 'inside',
          settled: () => router.noticesSettled(),
        });
      },
      async close() {
        if (closed) return;
        closed = true;
        stopHeartbeat();
        await servers.remove(config.serverId).catch(() => undefined);
        router.stop();
        transactions.stop();
        timers.stop();
        await transport.stop();
        await ops.close();
        await store.close();
      },
    };
    await store.followDrainRequests(server, log);
    log.info(
      {
        domain,
        next,
        listening: listening.map((l) => `${l.name ?? l.transport}://${l.host}:${l.port}`),
        http: ops.url,
      },
      'Parley edge started',
    );
    return server;
  } catch (err) {
    await store.abandon();
    throw err;
  }
}
