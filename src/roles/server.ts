import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { followArchivedGroups } from '../archive/groups.js';
import { ArchiveWriter } from '../archive/writer.js';
import { ClientGate } from '../clients/gate.js';
import { endRefusedEndpoint } from '../clients/refused-endpoint.js';
import { replaceContactList } from '../contacts/lists.js';
import { CONTACT_LIST_CONTENT_TYPE, emptyContactList } from '../contacts/model.js';
import { parseContactListXml } from '../contacts/xml-document.js';
import { serializeContactList } from '../contacts/xml-serialize.js';
import { MessageService } from '../im/message.js';
import { Departures } from '../migration/departures.js';
import type { ParleyConfig } from '../ops/config.js';
import { type HealthReport, type OpsServer, startOpsServer } from '../ops/http.js';
import { componentLogger, createLogger, sipTraceEnabled, sipTraceFields } from '../ops/log.js';
import { createMetrics } from '../ops/metrics.js';
import { StorePresencePolicy } from '../presence/policy-store.js';
import { MemoryPublicationStore, SharedPublicationStore } from '../presence/publications.js';
import { CONTACTS_EVENT, type ContactListAccess, PresenceServer } from '../presence/server.js';
import { clientAddress, ProxyCore } from '../proxy/core.js';
import { Director } from '../proxy/director.js';
import { FlowTokens } from '../proxy/flow-token.js';
import { UserHomes } from '../proxy/home-routing.js';
import { LocalIdentity, RELAY_LISTENER } from '../proxy/local.js';
import { DialogRouteSigner } from '../proxy/record-route.js';
import { AccountChanges, type SignOutReason } from '../registrar/account-changes.js';
import { AuthFailureTracker } from '../registrar/auth-failures.js';
import { Authenticator } from '../registrar/authenticator.js';
import { CredentialCache } from '../registrar/credentials.js';
import { type DigestAlgorithm, NonceManager } from '../registrar/digest.js';
import { LocationTable } from '../registrar/location.js';
import { LocationMirror } from '../registrar/mirror.js';
import { Registrar } from '../registrar/registrar.js';
import { SignInLog } from '../registrar/sign-in-log.js';
import { SESSIONS_SECRET_KEY, sessionsRoute, snapshotSessions } from '../reports/sessions.js';
import { UsageRecorder } from '../reports/usage-recorder.js';
import { hostReference } from '../sip/host.js';
import { createBranch, createTag } from '../sip/ids.js';
import { SipMessage } from '../sip/message.js';
import type { ParseError } from '../sip/parser.js';
import { createErrorResponseFromPartial, createResponse } from '../sip/response.js';
import { parseUri, uriAor } from '../sip/uri.js';
import { ArchiveRepository } from '../store/archive.js';
import { ClientPolicyRepository } from '../store/clients.js';
import { CONTACT_LISTS_CHANNEL, ContactListRepository } from '../store/contact-lists.js';
import { GroupRepository } from '../store/groups.js';
import { HomeRepository, PLACEMENT_CHANNEL } from '../store/homes.js';
import { openDatabase } from '../store/open.js';
import { PublicationRepository } from '../store/publications.js';
import { RegistrationRepository } from '../store/registrations.js';
import { ServerRepository } from '../store/servers.js';
import { sharedSecret } from '../store/settings.js';
import type { Database } from '../store/sql.js';
import { UsageRepository } from '../store/usage.js';
import { USERS_CHANNEL, UserRepository } from '../store/users.js';
import { type ServerTransaction, TransactionLayer } from '../transaction/layer.js';
import { TimerWheel } from '../transaction/timers.js';
import { type Listening, TransportLayer } from '../transport/layer.js';
import {
  ClusterWorkerDatabase,
  clusterWorkerIndex,
  clusterWorkerPorts,
  shareWorkerMetrics,
  startClusterPrimary,
} from './cluster.js';
import { startEdge } from './edge.js';
import { deferred, parseAdvertise, RoleStore, readTls } from './lifecycle.js';
import type { ParleyServer } from './parley-server.js';
import { serverPeers } from './server-peers.js';

export type { ParleyServer } from './parley-server.js';

export interface StartServerOptions {
  log?: Logger;
}

/**
 * Starts a Parley server in the role its configuration names. The standard role is the
 * all-in-one home: registrar, presence, IM and proxy over the embedded store.
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
  const metricsServerId = configured.serverId;
  const config = workerIndex !== undefined ? workerConfig(configured, workerIndex) : configured;
  const sipLog = componentLogger(log, 'sip');
  const store =
    workerIndex !== undefined
      ? await RoleStore.own(
          new ClusterWorkerDatabase(await openDatabase({ dataDir: config.database.dataDir, migrate: false })),
          config,
          false,
        )
      : await RoleStore.own(
          await openDatabase({ dataDir: config.database.dataDir, url: config.database.url }),
          config,
        );
  const { db, cleanups } = store;
  try {
    await store.serve(config.database.dataDir);

    const users = new UserRepository(db);
    const homes = new HomeRepository(db);
    const contactLists = new ContactListRepository(db);
    const domain = config.domain.toLowerCase();
    const location = new LocationTable(Date.now, {
      connectionGraceMs: config.registrar.connectionGraceSeconds * 1000,
    });
    const metrics = createMetrics({
      // A clustered server's workers report as one server (their series are summed).
      labels: { server: metricsServerId, role: config.role },
      sources: {
        registeredEndpoints: () => location.registeredEndpoints,
        signedInUsers: () => location.signedInUsers,
        connections: () => transport.connectionCount,
        serverTransactions: () => transactions.serverCount,
        archiveBacklog: () => archive?.backlog ?? 0,
        storeUp: () => storeAnswers(new ServerRepository(db)),
        certificateExpiry: certificateExpiry(config),
      },
    });
    if (workerIndex !== undefined) shareWorkerMetrics(metrics.registry);

    // The daily usage rollup (parley report usage): counted here, added to the store each minute.
    const usage =
      config.role === 'standard' || config.role === 'frontend'
        ? new UsageRecorder({
            repo: new UsageRepository(db),
            home: config.home ?? domain,
            serverId: config.serverId,
            signedIn: () => location.signedInUsers,
            log,
          })
        : undefined;
    if (usage) {
      usage.start();
      cleanups.push(() =>
        usage.close().catch((err: unknown) => log.warn({ err }, 'usage rollup not written')),
      );
    }
    const userActive = (aor: string) => {
      metrics.activeUsers.touch(aor);
      usage?.userActive(aor);
    };

    const credentials = new CredentialCache({
      lookup: async (aor) => {
        const c = await users.getCredentials(aor, domain);
        return c ? { aor: c.aor, enabled: c.enabled, ha1Md5: c.ha1Md5, ha1Sha256: c.ha1Sha256 } : undefined;
      },
    });
    // Every user of the home in memory: no database round trip on the authentication path.
    credentials.preload(
      (await users.listCredentials(domain)).map((c) => ({
        aor: c.aor,
        enabled: c.enabled,
        ha1Md5: c.ha1Md5,
        ha1Sha256: c.ha1Sha256,
      })),
    );
    // An administrator's disable or removal (users commands, directory replication) ends the
    // user's session here at once; each front-end of a pool does the same for its own.
    const endSessions = async (aor: string, reason: SignOutReason) => {
      const { removed, idleFlows } = location.signOut(aor);
      // A moved user is told "deactivated" (subscribe again, and land in the new home).
      const subscriptions = await presence.signOutUser(
        aor,
        reason === 'removed',
        reason === 'moved' ? 'deactivated' : 'rejected',
      );
      // The endpoint's own connection closes once the final NOTIFYs have left, so it notices
      // now: it reconnects and its REGISTER is refused (or, moved, redirected).
      if (idleFlows.length > 0) {
        setTimeout(() => {
          for (const id of idleFlows) transport.flow(id)?.close();
        }, 200).unref();
      }
      return { bindings: removed.length, subscriptions, connections: idleFlows.length };
    };
    const accounts = new AccountChanges({
      credentials,
      *activeUsers() {
        yield* location.aors();
        yield* presence.subscriptionParties();
      },
      userExists: async (aor) => (await users.getUser(aor)) !== undefined,
      signOut: endSessions,
      log: componentLogger(log, 'registrar'),
    });
    const unlisten = await db.listen(USERS_CHANNEL, (aor) => accounts.onChange(aor));
    cleanups.push(unlisten);
    // A wave migration moving a user away from this home (src/migration/departures.ts).
    const ownHome = config.role === 'standard' ? (config.home ?? domain) : config.home;
    const departures =
      ownHome && (config.role === 'standard' || config.role === 'frontend')
        ? new Departures({
            home: ownHome,
            load: () => homes.listPlacedElsewhere(ownHome),
            placement: async (aor) => {
              const h = await homes.getPlacement(aor);
              return h ? { home: h.name, address: h.address } : undefined;
            },
            signOut: (aor) => endSessions(aor, 'moved'),
            log: componentLogger(log, 'registrar'),
          })
        : undefined;
    if (departures) {
      await departures.start();
      cleanups.push(await db.listen(PLACEMENT_CHANNEL, (aor) => departures.onPlacement(aor)));
    }
    // Requests for users living in another home go there (docs/migration.md, the mixed environment).
    const userHomes =
      departures && ownHome ? await followUserHomes(db, homes, ownHome, config, cleanups) : undefined;

    // Server peers: by address, and by certificate too in security: high (src/roles/server-peers.ts).
    const peers = serverPeers(config);
    const relayPort = workerIndex !== undefined ? clusterWorkerPorts()?.relay : undefined;
    const transport = new TransportLayer({
      listen: config.listen,
      // A worker's own loopback listener, which the others relay its endpoints' requests to.
      namedListeners:
        relayPort !== undefined
          ? [{ name: RELAY_LISTENER, transport: 'tcp' as const, at: { host: '127.0.0.1', port: relayPort } }]
          : undefined,
      tls: readTls(config),
      serverPeerAddress: config.highSecurity ? peers?.isPeerAddress : undefined,
      dialTlsOnly: config.highSecurity,
      log: sipLog,
      limits: config.limits,
      onConnectionRefused: (reason) => metrics.connectionsRefused.inc(reason),
      onConnectionTimedOut: (reason) => metrics.connectionsTimedOut.inc(reason),
    });
    // Message archiving (docs/archiving.md): a MESSAGE's row is completed by its final response.
    const archive = config.archiving.enabled
      ? new ArchiveWriter<ServerTransaction>({
          ...config.archiving,
          repo: new ArchiveRepository(db),
          serverId: config.serverId,
          log: componentLogger(log, 'im'),
          onWritten: (rows) => metrics.archiveWritten.inc(rows),
          onWriteFailed: () => metrics.archiveFailures.inc(),
          onDropped: (rows) => metrics.archiveDropped.inc(rows),
        })
      : undefined;
    if (archive) {
      if (config.archiving.groups.length > 0) {
        const stop = await followArchivedGroups({
          writer: archive,
          repo: new GroupRepository(db),
          feed: db,
          groups: config.archiving.groups,
          log: componentLogger(log, 'im'),
        });
        cleanups.push(stop);
      }
      archive.startPurge();
      cleanups.push(() => archive.close());
    }
    const timers = new TimerWheel();
    timers.onError = (err) => sipLog.error({ err }, 'timer callback failed');
    const transactions = new TransactionLayer({
      timers,
      log: sipLog,
      onSend: (m, flow) => {
        if (!m.isRequest) metrics.responsesSent.inc(m.status);
        if (sipTraceEnabled(sipLog)) sipLog.debug(sipTraceFields(m, flow, 'out'), 'sent');
      },
      onFinal: (st) => {
        metrics.transactionLatency.observeSince(st.startedAt);
        if (archive && st.request.method === 'MESSAGE') archive.finished(st, st.lastResponse?.status ?? 0);
      },
      onAbandoned: () => metrics.failures.inc('internal'),
      maxServerTransactions: config.limits.maxTransactions,
      onOverload: () => metrics.failures.inc('overload'),
      udpFlowTo: (host, port) => transport.udpFlowTo(host, port),
      // RFC 3261 18.1.1: too large for UDP, so over TCP to the same address, Via to match.
      streamFor: async (request, udpFlow) => {
        const stream = await transport.connect('tcp', udpFlow.remoteAddress, udpFlow.remotePort);
        const branch = request.topVia.branch ?? createBranch();
        request.removeFirst('via');
        request.prepend('via', local.via(stream, branch));
        return stream;
      },
    });
    const pool = config.role === 'frontend' || workerIndex !== undefined;
    // The secret is shared by every server of the store (any front-end checks a nonce's signature);
    // each nonce only works on the connection it was issued on (NonceManager, flow binding).
    const nonces = new NonceManager({
      secret: await sharedSecret(db, 'digest_nonce_secret'),
      lifetimeSeconds: config.auth.nonceLifetimeSeconds,
    });
    const flowTokens = new FlowTokens(await sharedSecret(db, 'flow_token_secret'), config.serverId);
    const routeSigner = new DialogRouteSigner(await sharedSecret(db, 'record_route_secret'));
    // Server peers (the edge, directors, other homes) by the address their connections come from.
    const isTrustedPeer = peers?.isTrustedPeer;
    // The authenticator refuses answers in algorithms it did not offer (SHA-256 alone in security: high).
    const authenticator = new Authenticator(domain, nonces, credentials, {
      algorithms: digestAlgorithms(config),
      failures: new AuthFailureTracker(config.auth),
      log: componentLogger(log, 'registrar'),
      onFailure: (reason) => metrics.authFailures.inc(reason),
      onChallenge: () => metrics.authChallenges.inc(),
      // The edge passes on each remote client's address (docs/edge.md): guesses count per client.
      clientAddress: (request, flow) => (isTrustedPeer?.(flow) ? clientAddress(request) : undefined),
    });
    const signIns = new SignInLog(componentLogger(log, 'registrar'));
    signIns.watch(location);
    const registrar = new Registrar({
      domain,
      serverId: config.serverId,
      ...config.registrar,
      authenticator,
      location,
      onRegistered: userActive,
      isTrustedPeer,
      signIns,
    });

    let core!: ProxyCore;
    // Set once the client gate exists (below); flows may close before.
    let forgetRefusedFlow: ((flowId: string) => void) | undefined;
    // Set once the presence server exists (below): subscriptions made over a flow end with it.
    let endSubscriptionsOf: ((flowId: string) => void) | undefined;
    let draining = false;
    const drained = deferred();
    const listening = await transport.start({
      onMessage: (message, flow) => {
        if (message.isRequest) metrics.requestsReceived.inc(message.method);
        if (sipTraceEnabled(sipLog)) sipLog.debug(sipTraceFields(message, flow, 'in'), 'received');
        transactions.receive(message, flow);
      },
      onParseError: (flow, status, reason, partial) => {
        metrics.failures.inc('parse');
        const error = { status, reason, partial: partial as never };
        const response =
          createErrorResponseFromPartial(error, { toTag: createTag() }) ?? insufficientHeadersResponse(error);
        if (response) flow.send(response.toBuffer());
      },
      onFlowClosed: (flow) => {
        location.flowClosed(flow.id);
        forgetRefusedFlow?.(flow.id);
        endSubscriptionsOf?.(flow.id);
        if (draining && transport.flowCount === 0) drained.resolve();
      },
    });
    const advertise = parseAdvertise(config.advertise);
    const local = new LocalIdentity(domain, listening, advertise, config.serverId);
    const mirror = pool
      ? new LocationMirror(
          location,
          new RegistrationRepository(db),
          config.serverId,
          (flowId) => local.flowRoute(flowTokens.token(flowId)),
          componentLogger(log, 'registrar'),
          undefined,
          { onLookup: (source) => metrics.poolBindingLookups.inc(source) },
        )
      : undefined;
    if (mirror) {
      // A member starting again under its name (a restarted worker or front-end) holds none of
      // the flows its rows name: they died with the process before it.
      await new RegistrationRepository(db).removeForServer(config.serverId);
      await mirror.start(db);
    }
    authenticator.isLocalUri = (text) => {
      const uri = parseUri(text);
      return uri !== undefined && (uri.host.toLowerCase() === domain || local.isUs(uri));
    };

    const presence = new PresenceServer({
      domain,
      local,
      transactions,
      timers,
      policy: new StorePresencePolicy({ users, contactLists }, (aor) =>
        credentials.peek(aor) ? true : undefined,
      ),
      resolveUri: (uri) => core.resolveUri(uri),
      flowById: (id) => transport.flow(id),
      log: componentLogger(log, 'presence'),
      maxExpires: config.presence.maxExpires,
      defaultExpires: config.presence.defaultExpires,
      allowSameDomain: config.presence.allowSameDomain,
      minNotifyIntervalMs: config.presence.minNotifyInterval * 1000,
      maxSubscriptionsPerUser: config.presence.maxSubscriptionsPerUser,
      maxSubscriptionsPerEndpoint: config.presence.maxSubscriptionsPerEndpoint,
      connectionGraceMs: config.registrar.connectionGraceSeconds * 1000,
      onNotify: () => metrics.presenceNotifications.inc(),
      contactLists: storedContactLists(contactLists, config.presence.maxContactsPerUser),
      publications: pool
        ? new SharedPublicationStore(new PublicationRepository(db), db, config.serverId)
        : new MemoryPublicationStore(),
    });
    await presence.start();
    endSubscriptionsOf = (flowId) => presence.connectionClosed(flowId);
    // Lists change from clients (PUBLISH), imports and restores alike: every signed-in device
    // of the owner gets the new list, and watchers are re-authorized against its rules.
    cleanups.push(
      await db.listen(CONTACT_LISTS_CHANNEL, (aor) => {
        void presence
          .contactListChanged(aor)
          .catch((err: unknown) => log.warn({ err }, 'contact list notify failed'));
      }),
    );
    // Users who signed out in one turn (a closed connection that carried thousands of them)
    // are handled together: a few statements per SIGN_OUT_BATCH users instead of two each,
    // which in a pool queued ahead of every lookup a MESSAGE waits for.
    let signedOut: string[] | undefined;
    const signOutTogether = async (aors: string[]) => {
      for (let i = 0; i < aors.length; i += SIGN_OUT_BATCH) {
        const batch = aors.slice(i, i + SIGN_OUT_BATCH);
        // Signed in again meanwhile, here or (in a pool) through another front-end: still online.
        const offline = mirror
          ? await mirror.signedOutEverywhere(batch)
          : batch.filter((aor) => location.lookup(aor).length === 0);
        if (offline.length > 0) await presence.usersSignedOut(offline);
      }
    };
    location.on('signedOut', (aor) => {
      if (signedOut) {
        signedOut.push(aor);
        return;
      }
      signedOut = [aor];
      setImmediate(() => {
        const aors = signedOut ?? [];
        signedOut = undefined;
        signOutTogether(aors).catch((err: unknown) => log.warn({ err }, 'sign-out presence update failed'));
      });
    });
    // A client whose connection went (crashed, unplugged) is offline to its watchers now,
    // not when its registration would have expired.
    // Each endpoint's sign-out line comes from the SignInLog (reason connection_lost).
    location.on('lost', (_bindings, connectionId) => {
      if (connectionId === undefined) return;
      presence
        .connectionLost(connectionId)
        .catch((err: unknown) => log.warn({ err }, 'presence update after a lost connection failed'));
    });
    location.on('moved', (from, to) => presence.connectionMoved(from, to));

    const im = new MessageService({
      deliver: (request, st, party) => {
        const ruri = request.requestUri;
        if (!ruri) st.reply(416, 'Unsupported URI Scheme');
        else core.toLocalUser(request, st, ruri, party);
      },
      archive,
      onRouted: (bytes) => {
        usage?.messageRouted(bytes);
        metrics.messagesRouted.inc();
        metrics.messageBytesRouted.inc(bytes);
      },
    });

    // Client version control (docs/clients.md): REGISTER, SUBSCRIBE, PUBLISH and MESSAGE of
    // a client the rules refuse get 403; the rules follow the store without a restart.
    const clientGate = new ClientGate({
      domain,
      log: componentLogger(log, 'registrar'),
      registeredUserAgent: (aor, flowId) => location.lookup(aor).find((b) => b.flowId === flowId)?.userAgent,
      onRefused: (action) => metrics.clientRefusals.inc(action),
      // A refused refresh ends the endpoint's binding, publications and subscriptions now.
      onRegisterRefused: (request, flow) =>
        endRefusedEndpoint(
          {
            location,
            endpointRefused: (flowId) => presence.endpointRefused(flowId),
            log: componentLogger(log, 'registrar'),
          },
          request,
          flow,
        ),
    });
    cleanups.push(await clientGate.follow(db, new ClientPolicyRepository(db)));
    forgetRefusedFlow = (flowId) => clientGate.flowClosed(flowId);
    // A REGISTER of a user who moved away is answered as a director would: authenticated,
    // then redirected to the new home, so a client that reconnects here lands there.
    const redirector = departures
      ? new Director({
          domain,
          authenticator,
          placement: async (aor) => departures.redirect(aor),
          forward: (request, st, targets) => core.forward(request, st, targets),
          resolve: (uri) => core.resolveUri(uri),
          isTrustedPeer,
        })
      : undefined;
    const homeRegistrar: Pick<Registrar, 'handle'> = {
      handle: (request, st) => {
        const to = request.toUri;
        if (redirector && to && departures?.redirect(uriAor(to))) redirector.handleRegister(request, st);
        else registrar.handle(request, st);
      },
    };
    const director =
      config.role === 'director'
        ? new Director({
            domain,
            authenticator,
            placement: async (aor) => {
              const home = await homes.getPlacement(aor);
              return home ? { home: home.name, address: home.address } : undefined;
            },
            forward: (request, st, targets) => core.forward(request, st, targets),
            resolve: (uri) => core.resolveUri(uri),
            isTrustedPeer,
          })
        : undefined;

    core = new ProxyCore({
      domain,
      local,
      transactions,
      transport,
      location,
      authenticator,
      log: sipLog,
      registrar: clientGate.guardRegistrar(
        director ? { handle: (request, st) => director.handleRegister(request, st) } : homeRegistrar,
      ),
      services: director
        ? {}
        : {
            PUBLISH: clientGate.guard(presence),
            SUBSCRIBE: clientGate.guard(presence),
            MESSAGE: clientGate.guard(im),
          },
      routeToHome: director ? (request, st, ruri) => director.routeToHome(request, st, ruri) : undefined,
      remoteBindings: mirror ? (aor) => mirror.remote(aor) : undefined,
      onUserActivity: userActive,
      flowTokens,
      routeSigner,
      isTrustedPeer,
      federationEdge: config.federation.edge,
      userHomes,
      userExists: (aor) => {
        const known = credentials.peek(aor);
        if (known !== undefined) return known !== null;
        return users.getUser(aor).then((u) => Boolean(u?.enabled));
      },
    });
    transactions.setUser(core);

    const sweep = setInterval(() => location.expire(), 5_000);
    sweep.unref();

    // A standard server is a home by itself; a pool's home (its load balancer's address) is
    // declared by the administrator, and directors and edges are nobody's home.
    if (config.role === 'standard') {
      await homes.upsertHome({
        name: config.home ?? domain,
        kind: 'standard',
        address: homeAddress(listening, advertise),
      });
    } else if (config.role === 'frontend' && config.home && !(await homes.getHome(config.home))) {
      // The first front-end declares its pool; the administrator points it at the load balancer.
      await homes.upsertHome({ name: config.home, kind: 'pool', address: homeAddress(listening, advertise) });
    }

    // Endpoints by client for `parley clients report`.
    const clientsSignedIn = () =>
      clientGate.summarize(function* () {
        for (const aor of location.aors()) for (const b of location.lookup(aor)) yield b.userAgent;
      });
    const ops: OpsServer = await startOpsServer({
      ...config.http,
      metrics,
      // `parley server sessions`: the live state, for holders of the store's secret only.
      routes: {
        '/sessions': sessionsRoute(await sharedSecret(db, SESSIONS_SECRET_KEY), (user) =>
          snapshotSessions(
            {
              serverId: config.serverId,
              aors: () => location.aors(),
              lookup: (aor) => location.lookup(aor),
              flow: (id) => transport.flow(id),
              subscriptions: () => presence.subscriptionsHeld(),
            },
            user,
          ),
        ),
      },
      health: (): HealthReport => ({
        status: draining ? 'draining' : 'ok',
        role: config.role,
        serverId: config.serverId,
        flows: transport.flowCount,
        registeredEndpoints: location.registeredEndpoints,
        signedInUsers: location.signedInUsers,
        activeUsers: metrics.activeUsers.count(),
        subscriptions: presence.subscriptionCount,
        security: config.security,
        clients: clientsSignedIn(),
      }),
    });

    const servers = new ServerRepository(db);
    await servers.register({
      id: config.serverId,
      role: config.role,
      home: config.home ?? domain,
      address: homeAddress(listening, advertise),
      healthUrl: `${ops.url}/health`,
    });
    const heartbeat = setInterval(() => {
      servers.heartbeat(config.serverId).catch((err: unknown) => log.warn({ err }, 'heartbeat failed'));
      if (!pool) return;
      // A front-end that stopped beating (killed) leaves bindings nobody can reach: clean them up.
      sweepDeadServers(db, servers, config.serverId).catch((err: unknown) =>
        log.warn({ err }, 'sweep failed'),
      );
    }, HEARTBEAT_MS);
    heartbeat.unref();

    // Last resort: a promise rejected on the network path is logged, never a crash of the server.
    const onUnhandled = (reason: unknown) => log.error({ err: reason }, 'unhandled rejection');
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => {
      process.off('unhandledRejection', onUnhandled);
    });

    let closed = false;
    const server: ParleyServer = {
      config,
      listening,
      httpUrl: ops.url,
      metrics,
      db,
      drained: drained.promise,
      async drain(timeoutMs = 30_000) {
        if (draining) return drained.promise;
        draining = true;
        log.info({ server: config.serverId }, 'draining: no new connections, endpoints asked to move');
        await servers.setState(config.serverId, 'draining').catch(() => undefined);
        // The load balancer sees /health turn 503 and stops sending new connections here.
        transport.stopAccepting();
        // RFC 6665 4.1.3 "deactivated": watchers subscribe again at once, through another front-end.
        await presence.shutdown();
        // Its users' watchers see them offline at once, until they sign in elsewhere.
        await presence
          .dropOwnPublications()
          .catch((err: unknown) => log.warn({ err }, 'could not remove the presence published here'));
        await mirror?.stop();
        // Closing a client's connection makes it reconnect (through the load balancer) and register again.
        for (const flow of [...transport.allFlows()]) flow.close();
        if (transport.flowCount === 0) drained.resolve();
        const timer = setTimeout(() => drained.resolve(), timeoutMs);
        await drained.promise;
        clearTimeout(timer);
      },
      async close() {
        if (closed) return;
        closed = true;
        clearInterval(sweep);
        clearInterval(heartbeat);
        await presence.shutdown();
        await presence
          .dropOwnPublications()
          .catch((err: unknown) => log.warn({ err }, 'could not remove the presence published here'));
        await mirror?.stop().catch((err: unknown) => log.warn({ err }, 'could not remove registrations'));
        await servers.remove(config.serverId).catch(() => undefined);
        // Give the final NOTIFYs a moment to leave before the connections close.
        await new Promise((r) => setTimeout(r, 100));
        core.stop();
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
        listening: listening.map((l) => `${l.transport}://${l.host}:${l.port}`),
        http: ops.url,
      },
      'Parley server started',
    );
    return server;
  } catch (err) {
    await store.abandon();
    throw err;
  }
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
    serverId: `${config.serverId}-w${index}`,
    listen,
    http: { host: '127.0.0.1', port: ports.http },
  };
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

/** Residences of the users for routing between homes, forgotten when the store announces a change. */
async function followUserHomes(
  db: Database,
  homes: HomeRepository,
  home: string,
  config: ParleyConfig,
  cleanups: Array<() => Promise<void> | void>,
): Promise<UserHomes> {
  const userHomes = new UserHomes({
    home,
    find: (aor) => homes.findResidence(aor),
    director: config.homes.director,
    localEvents: [CONTACTS_EVENT],
  });
  for (const channel of [USERS_CHANNEL, PLACEMENT_CHANNEL])
    cleanups.push(await db.listen(channel, (aor) => userHomes.changed(aor)));
  return userHomes;
}

/**
 * RFC 4475 insuf: a request without Call-ID, From or To is answered 400 all the
 * same when it names where the answer goes (a Via): the response carries what there was.
 */
function insufficientHeadersResponse(error: Pick<ParseError, 'status' | 'reason' | 'partial'>) {
  const partial = error.partial;
  if (!partial?.isRequest || !partial.method || partial.method === 'ACK') return undefined;
  if (!partial.headers.some((h) => h.name === 'via')) return undefined;
  const request = SipMessage.request(partial.method, partial.uri ?? '', partial.headers);
  return createResponse(request, 400, error.status === 400 ? error.reason : undefined);
}

/** The `parley-contacts` event package's view of the stored contact lists. */
function storedContactLists(lists: ContactListRepository, maxContacts: number): ContactListAccess {
  const owner = async (aor: string) => (await lists.findOwners([aor])).get(aor);
  return {
    contentType: CONTACT_LIST_CONTENT_TYPE,
    async read(aor) {
      const o = await owner(aor);
      const list = o ? await lists.get(o.id) : emptyContactList(`sip:${aor}`);
      return { body: serializeContactList(list), version: list.version };
    },
    async replace(aor, body) {
      const parsed = parseContactListXml(body);
      if (!parsed.ok) {
        const e = parsed.errors[0];
        return { ok: false, reason: `line ${e.line} column ${e.column}: ${e.reason}` };
      }
      if (parsed.list.contacts.length > maxContacts)
        return {
          ok: false,
          limit: true,
          reason: `${parsed.list.contacts.length} contacts: at most ${maxContacts} per user (presence.maxContactsPerUser)`,
        };
      const o = await owner(aor);
      if (!o) return { ok: false, reason: 'no such user' };
      const change = await replaceContactList(lists, o.id, parsed.list);
      return { ok: true, version: change.version };
    },
  };
}

/**
 * Which digest challenges to send. RFC 8760 lets a server offer SHA-256 and MD5 side by side,
 * but JsSIP merges two WWW-Authenticate headers into one and gives up, and SIPp answers only
 * the first: so by default one MD5 challenge (as Kamailio sends), both algorithms when the
 * configuration asks for them, and SHA-256 alone in high-security mode. Both HA1s are always
 * stored, so switching is a configuration change.
 */
function digestAlgorithms(config: ParleyConfig): DigestAlgorithm[] {
  if (config.highSecurity) return ['SHA-256'];
  return config.registrar.digestAlgorithms;
}

function homeAddress(listening: Listening[], advertise?: { host: string; port?: number }): string {
  const tcp = listening.find((l) => l.transport === 'tcp') ?? listening[0];
  const host =
    advertise?.host ?? (tcp && tcp.host !== '0.0.0.0' && tcp.host !== '::' ? tcp.host : '127.0.0.1');
  const port = advertise?.port ?? tcp?.port ?? 5060;
  return `sip:${hostReference(host)}:${port};transport=${tcp?.transport ?? 'tcp'}`;
}

const HEARTBEAT_MS = 5_000;
/** Users signed out together per statement (src/roles/server.ts, the signedOut handler). */
const SIGN_OUT_BATCH = 2_000;
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
