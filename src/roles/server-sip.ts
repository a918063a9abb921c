import { followArchivedGroups } from '../archive/groups.js';
import { ArchiveWriter } from '../archive/writer.js';
import { ClientGate } from '../clients/gate.js';
import { endRefusedEndpoint } from '../clients/refused-endpoint.js';
import { replaceContactList } from '../contacts/lists.js';
import { CONTACT_LIST_CONTENT_TYPE, emptyContactList } from '../contacts/model.js';
import { parseContactListXml } from '../contacts/xml-document.js';
import { serializeContactList } from '../contacts/xml-serialize.js';
import { MessageService } from '../im/message.js';
import { type ParleyConfig, parseAdvertise } from '../ops/config.js';
import { componentLogger, sipTraceEnabled, sipTraceFields } from '../ops/log.js';
import type { ParleyMetrics } from '../ops/metrics.js';
import { StorePresencePolicy } from '../presence/policy-store.js';
import { MemoryPublicationStore, SharedPublicationStore } from '../presence/publications.js';
import { type ContactListAccess, PresenceServer } from '../presence/server.js';
import { clientAddress, ProxyCore } from '../proxy/core.js';
import { Director, type DirectorOptions } from '../proxy/director.js';
import { FlowTokens } from '../proxy/flow-token.js';
import { LocalIdentity, RELAY_LISTENER } from '../proxy/local.js';
import { DialogRouteSigner } from '../proxy/record-route.js';
import { AuthFailureTracker } from '../registrar/auth-failures.js';
import { Authenticator } from '../registrar/authenticator.js';
import { type DigestAlgorithm, NonceManager } from '../registrar/digest.js';
import type { LocationTable } from '../registrar/location.js';
import { LocationMirror } from '../registrar/mirror.js';
import { Registrar } from '../registrar/registrar.js';
import { SignInLog } from '../registrar/sign-in-log.js';
import { WorkerBindings } from '../registrar/worker-bindings.js';
import { createBranch, createTag } from '../sip/ids.js';
import { SipMessage } from '../sip/message.js';
import type { ParseError } from '../sip/parser.js';
import { createErrorResponseFromPartial, createResponse } from '../sip/response.js';
import { parseUri, uriAor } from '../sip/uri.js';
import { ArchiveRepository } from '../store/archive.js';
import { ClientPolicyRepository } from '../store/clients.js';
import { CONTACT_LISTS_CHANNEL, type ContactListRepository } from '../store/contact-lists.js';
import { GroupRepository } from '../store/groups.js';
import { PublicationRepository } from '../store/publications.js';
import { RegistrationRepository } from '../store/registrations.js';
import { sharedSecret } from '../store/settings.js';
import { type ServerTransaction, TransactionLayer } from '../transaction/layer.js';
import { TimerWheel } from '../transaction/timers.js';
import type { Flow } from '../transport/flow.js';
import { type Listening, TransportLayer } from '../transport/layer.js';
import { clusterWorkerPorts, workerBindingChannel } from './cluster.js';
import { readTls } from './lifecycle.js';
import type { ServerAccounts } from './server-accounts.js';
import type { ServerBase } from './server-base.js';
import { type ServerPeers, serverPeers } from './server-peers.js';

/** A home server's (or director's) SIP layers, from its listeners up to the proxy core. */
export interface SipStack {
  transport: TransportLayer;
  listening: Listening[];
  advertise: { host: string; port?: number } | undefined;
  timers: TimerWheel;
  transactions: TransactionLayer;
  archive: ArchiveWriter<ServerTransaction> | undefined;
  presence: PresenceServer;
  /** Set in a pool: this member's bindings in the store (or, a worker's, told to the other workers), and the others'. */
  mirror: PoolBindings | undefined;
  clientGate: ClientGate;
  core: ProxyCore;
}

/** The other pool members' bindings, as a pool front-end or a worker of a standard server sees them. */
export type PoolBindings = Pick<LocationMirror, 'remote' | 'signedOutEverywhere' | 'stop'>;

/** What the SIP layers report to beyond themselves. */
export interface SipStackHooks {
  /** A user registered, or sent or received through the proxy (active users, usage). */
  userActive(aor: string): void;
  /** A MESSAGE was routed, of so many bytes (usage). */
  messageRouted(bytes: number): void;
  /** Every closed connection: a drain waits for the last. */
  flowClosed(): void;
}

/**
 * Starts the listeners and wires the SIP layers over them: transactions, the registrar and
 * its authentication, presence, IM, client version control and the proxy core. Each piece
 * that follows the store registers its cleanup in `base.cleanups`.
 */
export async function startSipStack(
  base: ServerBase,
  accounts: ServerAccounts,
  location: LocationTable,
  metrics: ParleyMetrics,
  hooks: SipStackHooks,
): Promise<SipStack> {
  const { config, db, domain } = base;
  // Server peers: by address, and by certificate too in security: high (src/roles/server-peers.ts).
  const peers = serverPeers(config);
  const transport = createTransport(base, metrics, peers?.isPeerAddress);
  const archive = await startArchive(base, metrics);
  let local!: LocalIdentity;
  const { timers, transactions } = createTransactions(base, metrics, archive, transport, () => local);
  // The secret is shared by every server of the store (any front-end checks a nonce's signature);
  // each nonce only works on the connection it was issued on (NonceManager, flow binding).
  const nonceSecret = await sharedSecret(db, 'digest_nonce_secret');
  const flowTokens = new FlowTokens(await sharedSecret(db, 'flow_token_secret'), config.serverId);
  const routeSigner = new DialogRouteSigner(await sharedSecret(db, 'record_route_secret'));
  // Server peers (the edge, directors, other homes) by the address their connections come from.
  const isTrustedPeer = peers?.isTrustedPeer;
  const { authenticator, registrar } = createRegistrar(base, accounts, location, metrics, nonceSecret, {
    isTrustedPeer,
    userActive: hooks.userActive,
  });

  let core!: ProxyCore;
  // Set once the client gate exists (below); flows may close before.
  let forgetRefusedFlow: ((flowId: string) => void) | undefined;
  // Set once the presence server exists (below): subscriptions made over a flow end with it.
  let endSubscriptionsOf: ((flowId: string) => void) | undefined;
  const listening = await transport.start({
    onMessage: (message, flow) => {
      if (message.isRequest) metrics.requestsReceived.inc(message.method);
      if (sipTraceEnabled(base.sipLog)) base.sipLog.debug(sipTraceFields(message, flow, 'in'), 'received');
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
      hooks.flowClosed();
    },
  });
  const advertise = parseAdvertise(config.advertise);
  local = new LocalIdentity(domain, listening, advertise, config.serverId);
  const mirror = await startMirror(base, location, metrics, (flowId) =>
    local.flowRoute(flowTokens.token(flowId)),
  );
  authenticator.isLocalUri = (text) => {
    const uri = parseUri(text);
    return uri !== undefined && (uri.host.toLowerCase() === domain || local.isUs(uri));
  };

  const presence = await startPresence(base, accounts, location, metrics, mirror, {
    local,
    transactions,
    timers,
    resolveUri: (uri) => core.resolveUri(uri),
    flowById: (id) => transport.flow(id),
  });
  endSubscriptionsOf = (flowId) => presence.connectionClosed(flowId);

  const im = new MessageService({
    deliver: (request, st, party) => {
      const ruri = request.requestUri;
      if (!ruri) st.reply(416, 'Unsupported URI Scheme');
      else core.toLocalUser(request, st, ruri, party);
    },
    archive,
    onRouted: (bytes) => {
      hooks.messageRouted(bytes);
      metrics.messagesRouted.inc();
      metrics.messageBytesRouted.inc(bytes);
    },
  });
  const clientGate = await followClientPolicy(base, location, metrics, presence);
  forgetRefusedFlow = (flowId) => clientGate.flowClosed(flowId);
  const directors = createDirectors(base, accounts, authenticator, isTrustedPeer, () => core);
  // A REGISTER of a user who moved away is answered as a director would (createDirectors).
  const homeRegistrar: Pick<Registrar, 'handle'> = {
    handle: (request, st) => {
      const to = request.toUri;
      const redirector = directors.redirector;
      if (redirector && to && accounts.departures?.redirect(uriAor(to)))
        redirector.handleRegister(request, st);
      else registrar.handle(request, st);
    },
  };
  const director = directors.director;

  core = new ProxyCore({
    domain,
    local,
    transactions,
    transport,
    location,
    authenticator,
    log: base.sipLog,
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
    onUserActivity: hooks.userActive,
    flowTokens,
    routeSigner,
    isTrustedPeer,
    federationEdge: config.federation.edge,
    userHomes: accounts.userHomes,
    userExists: (aor) => {
      const known = accounts.credentials.peek(aor);
      if (known !== undefined) return known !== null;
      return accounts.users.getUser(aor).then((u) => Boolean(u?.enabled));
    },
  });
  transactions.setUser(core);
  return {
    transport,
    listening,
    advertise,
    timers,
    transactions,
    archive,
    presence,
    mirror,
    clientGate,
    core,
  };
}

/** The listeners (config.listen), not yet started. */
function createTransport(
  base: ServerBase,
  metrics: ParleyMetrics,
  isPeerAddress: ((address: string) => boolean) | undefined,
): TransportLayer {
  const { config } = base;
  const relayPort = base.workerIndex !== undefined ? clusterWorkerPorts()?.relay : undefined;
  return new TransportLayer({
    listen: config.listen,
    // A worker's own loopback listener, which the others relay its endpoints' requests to.
    namedListeners:
      relayPort !== undefined
        ? [{ name: RELAY_LISTENER, transport: 'tcp' as const, at: { host: '127.0.0.1', port: relayPort } }]
        : undefined,
    tls: readTls(config),
    serverPeerAddress: config.highSecurity ? isPeerAddress : undefined,
    dialTlsOnly: config.highSecurity,
    log: base.sipLog,
    limits: config.limits,
    onConnectionRefused: (reason) => metrics.connectionsRefused.inc(reason),
    onConnectionTimedOut: (reason) => metrics.connectionsTimedOut.inc(reason),
  });
}

/** Message archiving (docs/archiving.md): a MESSAGE's row is completed by its final response. */
async function startArchive(
  base: ServerBase,
  metrics: ParleyMetrics,
): Promise<ArchiveWriter<ServerTransaction> | undefined> {
  const { config, db } = base;
  if (!config.archiving.enabled) return undefined;
  const archive = new ArchiveWriter<ServerTransaction>({
    ...config.archiving,
    repo: new ArchiveRepository(db),
    serverId: config.serverId,
    log: componentLogger(base.log, 'im'),
    onWritten: (rows) => metrics.archiveWritten.inc(rows),
    onWriteFailed: () => metrics.archiveFailures.inc(),
    onDropped: (rows) => metrics.archiveDropped.inc(rows),
  });
  if (config.archiving.groups.length > 0) {
    const stop = await followArchivedGroups({
      writer: archive,
      repo: new GroupRepository(db),
      feed: db,
      groups: config.archiving.groups,
      log: componentLogger(base.log, 'im'),
    });
    base.cleanups.push(stop);
  }
  archive.startPurge();
  base.cleanups.push(() => archive.close());
  return archive;
}

/** The transaction layer (RFC 3261 section 17) and the timers it runs on. */
function createTransactions(
  base: ServerBase,
  metrics: ParleyMetrics,
  archive: ArchiveWriter<ServerTransaction> | undefined,
  transport: TransportLayer,
  local: () => LocalIdentity,
): { timers: TimerWheel; transactions: TransactionLayer } {
  const { sipLog } = base;
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
    maxServerTransactions: base.config.limits.maxTransactions,
    onOverload: () => metrics.failures.inc('overload'),
    udpFlowTo: (host, port) => transport.udpFlowTo(host, port),
    // RFC 3261 18.1.1: too large for UDP, so over TCP to the same address, Via to match.
    streamFor: async (request, udpFlow) => {
      const stream = await transport.connect('tcp', udpFlow.remoteAddress, udpFlow.remotePort);
      const branch = request.topVia.branch ?? createBranch();
      request.removeFirst('via');
      request.prepend('via', local().via(stream, branch));
      return stream;
    },
  });
  return { timers, transactions };
}

/** Digest authentication (nonces signed with the store's shared secret) and the registrar. */
function createRegistrar(
  base: ServerBase,
  accounts: ServerAccounts,
  location: LocationTable,
  metrics: ParleyMetrics,
  nonceSecret: Buffer,
  peers: { isTrustedPeer: ServerPeers['isTrustedPeer'] | undefined; userActive: (aor: string) => void },
): { authenticator: Authenticator; registrar: Registrar } {
  const { config, log } = base;
  const { isTrustedPeer } = peers;
  const nonces = new NonceManager({
    secret: nonceSecret,
    lifetimeSeconds: config.auth.nonceLifetimeSeconds,
  });
  // The authenticator refuses answers in algorithms it did not offer (SHA-256 alone in security: high).
  const authenticator = new Authenticator(base.domain, nonces, accounts.credentials, {
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
    domain: base.domain,
    serverId: config.serverId,
    ...config.registrar,
    authenticator,
    location,
    onRegistered: peers.userActive,
    isTrustedPeer,
    signIns,
  });
  return { authenticator, registrar };
}

/**
 * In a pool, the bindings of every member in the store (LocationMirror); a worker of a
 * standard server shares its own with the other workers over IPC instead (WorkerBindings),
 * keeping the store off the REGISTER path as one process does; undefined otherwise.
 */
async function startMirror(
  base: ServerBase,
  location: LocationTable,
  metrics: ParleyMetrics,
  flowRoute: (flowId: string) => string,
): Promise<PoolBindings | undefined> {
  if (!base.pool) return undefined;
  const { config, db } = base;
  if (base.workerIndex !== undefined) {
    const shared = new WorkerBindings(
      location,
      workerBindingChannel(undefined, componentLogger(base.log, 'registrar')),
      config.serverId,
      flowRoute,
    );
    shared.start();
    return shared;
  }
  const mirror = new LocationMirror(
    location,
    new RegistrationRepository(db),
    config.serverId,
    flowRoute,
    componentLogger(base.log, 'registrar'),
    undefined,
    { onLookup: (source) => metrics.poolBindingLookups.inc(source) },
  );
  // A member starting again under its name (a restarted worker or front-end) holds none of
  // the flows its rows name: they died with the process before it.
  await new RegistrationRepository(db).removeForServer(config.serverId);
  await mirror.start(db);
  return mirror;
}

/** What presence reaches of the layers below it and of the proxy core. */
interface PresenceLinks {
  local: LocalIdentity;
  transactions: TransactionLayer;
  timers: TimerWheel;
  resolveUri: ProxyCore['resolveUri'];
  flowById: (id: string) => Flow | undefined;
}

/**
 * The presence server, following the store's contact lists and the location table's
 * sign-outs, lost connections and moved flows.
 */
async function startPresence(
  base: ServerBase,
  accounts: ServerAccounts,
  location: LocationTable,
  metrics: ParleyMetrics,
  mirror: PoolBindings | undefined,
  links: PresenceLinks,
): Promise<PresenceServer> {
  const { config, db, log } = base;
  const { users, contactLists, credentials } = accounts;
  const presence = new PresenceServer({
    domain: base.domain,
    local: links.local,
    transactions: links.transactions,
    timers: links.timers,
    policy: new StorePresencePolicy({ users, contactLists }, (aor) =>
      credentials.peek(aor) ? true : undefined,
    ),
    resolveUri: links.resolveUri,
    flowById: links.flowById,
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
    publications: base.pool
      ? new SharedPublicationStore(new PublicationRepository(db), db, config.serverId)
      : new MemoryPublicationStore(),
  });
  await presence.start();
  // Lists change from clients (PUBLISH), imports and restores alike: every signed-in device
  // of the owner gets the new list, and watchers are re-authorized against its rules.
  base.cleanups.push(
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
  return presence;
}

/**
 * Client version control (docs/clients.md): REGISTER, SUBSCRIBE, PUBLISH and MESSAGE of
 * a client the rules refuse get 403; the rules follow the store without a restart.
 */
async function followClientPolicy(
  base: ServerBase,
  location: LocationTable,
  metrics: ParleyMetrics,
  presence: PresenceServer,
): Promise<ClientGate> {
  const { db, log } = base;
  const clientGate = new ClientGate({
    domain: base.domain,
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
  base.cleanups.push(await clientGate.follow(db, new ClientPolicyRepository(db)));
  return clientGate;
}

/**
 * The director of the director role, which sends each user to their home; and a home's
 * redirector: a REGISTER of a user who moved away is answered as a director would,
 * authenticated, then redirected to the new home, so a client that reconnects here lands there.
 */
function createDirectors(
  base: ServerBase,
  accounts: ServerAccounts,
  authenticator: Authenticator,
  isTrustedPeer: ServerPeers['isTrustedPeer'] | undefined,
  core: () => ProxyCore,
): { director: Director | undefined; redirector: Director | undefined } {
  const { departures, homes } = accounts;
  const routing: Omit<DirectorOptions, 'placement'> = {
    domain: base.domain,
    authenticator,
    forward: (request, st, targets) => core().forward(request, st, targets),
    resolve: (uri) => core().resolveUri(uri),
    isTrustedPeer,
  };
  const redirector = departures
    ? new Director({ ...routing, placement: async (aor) => departures.redirect(aor) })
    : undefined;
  const director =
    base.config.role === 'director'
      ? new Director({
          ...routing,
          placement: async (aor) => {
            const home = await homes.getPlacement(aor);
            return home ? { home: home.name, address: home.address } : undefined;
          },
        })
      : undefined;
  return { director, redirector };
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

/** Users signed out together per statement (startPresence, the signedOut handler). */
const SIGN_OUT_BATCH = 2_000;
