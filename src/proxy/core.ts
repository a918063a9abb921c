import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { createBranch, isOwnBranch } from '../sip/ids.js';
import type { SipMessage } from '../sip/message.js';
import { type ParsedUriSlot, parseNameAddr } from '../sip/nameaddr.js';
import { ownString } from '../sip/own-string.js';
import { parseUri, type SipUri, uriAor } from '../sip/uri.js';
import type { ServerTransaction, TransactionLayer, TransactionUser } from '../transaction/layer.js';
import type { Flow, TransportName } from '../transport/flow.js';
import type { TransportLayer } from '../transport/layer.js';
import type { FlowTokens } from './flow-token.js';
import { type ForwardTarget, ProxyContext } from './forward.js';
import type { UserHomes } from './home-routing.js';
import type { LocalIdentity } from './local.js';
import { DIALOG_ROUTE_PARAM, type DialogRouteSigner } from './record-route.js';

/** A service that answers requests addressed to users of this server (registrar, presence, IM). */
export interface RequestHandler {
  handle(request: SipMessage, st: ServerTransaction, from: AuthenticatedParty): void;
}

/**
 * What the proxy asks of digest authentication (RFC 3261 22): the registrar's Authenticator
 * is one. `www` answers with 401 challenges (REGISTER), `proxy` with 407.
 */
export interface RequestAuthenticator {
  authenticate(
    request: SipMessage,
    kind: 'www' | 'proxy',
    flow: Flow,
    /** The transaction: a challenge to a request without credentials is derived from it (ChallengeSeed). */
    seed?: ServerTransaction,
  ): AuthVerdict | Promise<AuthVerdict>;
}

export type AuthVerdict =
  | { ok: true; aor: string }
  | { ok: false; status: 401 | 407; challenges: string[]; toTag?: string }
  | { ok: false; status: 400 | 403; reason: string };

/** A registered contact of a user, as forwarding needs it: the registrar's Binding is one. */
export interface ContactBinding {
  /** The Contact URI as the endpoint registered it. */
  contact: string;
  /** RFC 3327 Path: Route values to reach the contact through. */
  path: string[];
  /** The flow it registered over. */
  flowId?: string;
  /** Reachable over its flow only (RFC 5626, WebSocket, `.invalid` hosts). */
  flowOnly: boolean;
}

/** The location service as the proxy reads it: AOR -> the bindings that are live now. */
export interface BindingLookup {
  lookup(aor: string): ContactBinding[];
}

/** Who sent a request, as far as this server could establish. */
export interface AuthenticatedParty {
  /** The local user the request is authenticated as, if any. */
  aor?: string;
  flow: Flow;
}

export interface ProxyCoreOptions {
  domain: string;
  local: LocalIdentity;
  transactions: TransactionLayer;
  transport: TransportLayer;
  location: BindingLookup;
  authenticator: RequestAuthenticator;
  log: Logger;
  registrar: { handle(request: SipMessage, st: ServerTransaction): void };
  /** Method -> service for requests to local users that are not plain proxying. */
  services: Partial<Record<string, RequestHandler>>;
  /** Is this AOR a user of this home? (unknown users get 404, known but offline 480) */
  userExists(aor: string): boolean | Promise<boolean>;
  /** A director sends requests for users to their homes instead of to registered endpoints. */
  routeToHome?: (request: SipMessage, st: ServerTransaction, ruri: SipUri) => void;
  /** A local user was active (an authenticated request): for the active-users metric. */
  onUserActivity?: (aor: string) => void;
  /** Bindings of the user on other front-ends of the pool (known at once when cached). */
  remoteBindings?: (aor: string) => ContactBinding[] | Promise<ContactBinding[]>;
  /** Signs and checks the flow tokens pool members route each other's requests with. */
  flowTokens?: FlowTokens;
  /** Signs our Record-Routes per dialog and checks the Routes that come back. */
  routeSigner: DialogRouteSigner;
  /**
   * Server peers inside the deployment (the edge, directors): their requests from other
   * domains are accepted as already checked (federation), their P-Asserted-Identity is
   * believed (RFC 3325), and nothing is cached on their connections, which many users share.
   */
  isTrustedPeer?(flow: Flow): boolean;
  /**
   * Where requests of local users for other domains go (the edge's inside listener); without
   * it a server relays nothing to other domains.
   */
  federationEdge?: string;
  onForwardFinal?: (method: string, status: number) => void;
  /**
   * A home in a mixed environment (docs/migration.md): requests for users of the domain who
   * live in another home go there, or to the director for users this home does not know.
   */
  userHomes?: UserHomes;
}

/** The AOR a trusted peer asserts for the sender (RFC 3325 P-Asserted-Identity), if any. */
export function assertedAor(request: SipMessage): string | undefined {
  const value = request.get('p-asserted-identity');
  if (!value) return undefined;
  const na = parseNameAddr(value);
  const uri = na ? parseUri(na.uri) : undefined;
  return uri ? uriAor(uri) : undefined;
}

/**
 * The address a trusted edge saw a request come from (docs/edge.md): believed only from
 * `trustedPeers`, removed from anyone else's requests, so the home's password-guessing
 * limits count each remote client rather than the edge's one address.
 */
export const CLIENT_ADDRESS_HEADER = 'p-parley-client';

/** The client address a trusted peer passed on, if it is one. */
export function clientAddress(request: SipMessage): string | undefined {
  const value = request.get(CLIENT_ADDRESS_HEADER)?.trim();
  return value !== undefined && isIP(value) !== 0 ? value : undefined;
}

/** Receives the URI of the Route being looked at: parsed with its name-addr, not again. */
const routeUri: ParsedUriSlot = { uri: undefined };

/** Extensions a request may Proxy-Require of us (RFC 3261 16.3 step 6). */
const PROXY_SUPPORTED = new Set<string>();
/** No unsupported extensions: shared instead of an empty array per request. */
const NONE: readonly string[] = [];
/** Extensions this server supports: RFC 3327 Path and RFC 5626 outbound. */
const SUPPORTED = 'path, outbound';
const ALLOW =
  'INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, PUBLISH, REGISTER, INFO, UPDATE, REFER, PRACK';

/**
 * The routing core: the transaction user that validates every request (RFC 3261 16.3),
 * handles loose routing (16.4), authenticates local senders, and sends each request to the
 * registrar, a local service or the forwarder.
 */
export class ProxyCore implements TransactionUser {
  /** Contact URI -> flow it was seen on, for in-dialog requests to clients only their flow reaches. */
  private readonly contactFlows = new Map<string, Flow>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly opts: ProxyCoreOptions) {
    this.sweep = setInterval(() => {
      for (const [contact, flow] of this.contactFlows) if (flow.closed) this.contactFlows.delete(contact);
    }, 30_000);
    this.sweep.unref();
  }

  stop(): void {
    clearInterval(this.sweep);
  }

  onRequest(request: SipMessage, st: ServerTransaction): void {
    const method = request.method;
    // RFC 3325 9.1: an asserted identity is only believed from inside the trust domain; so is
    // the client address an edge passes on.
    if (
      (request.has('p-asserted-identity') || request.has(CLIENT_ADDRESS_HEADER)) &&
      !this.opts.isTrustedPeer?.(st.flow)
    ) {
      request.remove('p-asserted-identity');
      request.remove(CLIENT_ADDRESS_HEADER);
    }
    // Fast path: REGISTER for our domain goes straight to the registrar.
    if (method === 'REGISTER' && !request.get('route')) {
      if (!this.checkMaxForwards(request, st)) return;
      this.opts.registrar.handle(request, st);
      return;
    }
    if (!this.checkMaxForwards(request, st)) return;
    // RFC 3261 16.3 step 4: loop detection (a spiral through us with the same request is a loop).
    if (this.isLoop(request)) {
      st.reply(482, 'Loop Detected');
      return;
    }
    // Step 6: Proxy-Require.
    const unsupported = request.has('proxy-require')
      ? request.getAll('proxy-require').filter((e) => !PROXY_SUPPORTED.has(e.toLowerCase()))
      : NONE;
    if (unsupported.length > 0) {
      st.reply(420, 'Bad Extension', { headers: [{ name: 'unsupported', value: unsupported.join(', ') }] });
      return;
    }
    // RFC 3261 16.4: pop Route entries that name us.
    const { pinned: pinnedFlow, signed } = this.removeOwnRoutes(request);
    if (pinnedFlow !== undefined) {
      // Relayed by another front-end of the pool for an endpoint connected here.
      this.forward(request, st, [{ uri: request.uri, resolve: () => this.flowOrFail(pinnedFlow) }]);
      return;
    }

    const inDialog = request.to.tag !== undefined;
    const ruri = request.requestUri;
    if (!ruri) {
      st.reply(416, 'Unsupported URI Scheme');
      return;
    }
    // Forwarded without authentication only in a dialog whose Record-Route we signed, or
    // from a trusted server peer; anything else that goes past us is authenticated first.
    const dialogRoute = inDialog && signed;
    const trusted = this.opts.isTrustedPeer?.(st.flow) === true;
    if (request.has('route') && request.getAll('route').length > 0) {
      if (dialogRoute || trusted) {
        this.rememberContact(request, st.flow);
        this.routeOnward(request, st);
        return;
      }
      // A pre-loaded route beyond us: an authenticated local user may use us as its
      // outbound proxy (RFC 3261 8.1.2); a stranger never gets past the challenge.
      this.authenticateThen(request, st, () => {
        this.rememberContact(request, st.flow);
        this.routeOnward(request, st);
      });
      return;
    }
    if (dialogRoute && this.opts.routeToHome) {
      // A director is never a UA in a dialog: along its own Record-Route a request goes on by
      // its Request-URI (RFC 3261 16.6 step 7), even to a home that shares its host (a
      // `presence@` Contact names a host, not a port, and would look like us).
      this.rememberContact(request, st.flow);
      this.routeOnward(request, st);
      return;
    }
    if (dialogRoute && this.namesAnotherServer(ruri)) {
      // Along our Record-Route of a dialog we sent to another home, towards that home's presence server.
      this.rememberContact(request, st.flow);
      this.routeOnward(request, st);
      return;
    }
    // RFC 3261 11: an OPTIONS to the domain itself (load balancers and dispatchers ping
    // `sip:DOMAIN`) is answered here, as one to this server's address is.
    if (method === 'OPTIONS' && !ruri.user && ruri.host.toLowerCase() === this.opts.domain && !inDialog) {
      this.answerOptions(st);
      return;
    }
    if (this.opts.local.isUs(ruri)) {
      // Addressed to this server itself: in-dialog requests of dialogs we are a UA in, or OPTIONS pings.
      const service = this.opts.services[method];
      if (service && method !== 'OPTIONS') {
        service.handle(request, st, { flow: st.flow, aor: this.flowAor(request, st.flow) });
        return;
      }
      if (method === 'OPTIONS') {
        this.answerOptions(st);
        return;
      }
      st.reply(inDialog ? 481 : 404, inDialog ? 'Call/Transaction Does Not Exist' : 'Not Found');
      return;
    }
    if (ruri.host.toLowerCase() !== this.opts.domain) {
      if (dialogRoute || (trusted && inDialog)) {
        this.rememberContact(request, st.flow);
        this.routeOnward(request, st);
        return;
      }
      // In-dialog requests to a client's Contact from a dialog we did not sign for are
      // relayed for an authenticated local user only. Out of a dialog, requests for other
      // domains go to the edge (federation), and only a local user's: never a relay.
      this.authenticateThen(request, st, (party) => {
        if (inDialog) {
          this.rememberContact(request, st.flow);
          this.routeOnward(request, st);
          return;
        }
        const edge = this.opts.federationEdge;
        if (!edge || !party.aor) {
          st.reply(403, 'Forbidden - Relaying Denied');
          return;
        }
        this.rememberContact(request, st.flow);
        this.forward(request, st, [{ uri: request.uri, resolve: () => this.reach(edge) }]);
      });
      return;
    }
    if (method === 'REGISTER') {
      this.opts.registrar.handle(request, st);
      return;
    }
    if (inDialog && method === 'SUBSCRIBE' && this.opts.services.SUBSCRIBE) {
      // A refresh of a subscription dialog we are the UA in: the presence server checks the dialog.
      this.opts.services.SUBSCRIBE.handle(request, st, {
        flow: st.flow,
        aor: this.flowAor(request, st.flow),
      });
      return;
    }
    // Out-of-dialog requests, and in-dialog ones aimed at an AOR rather than a Contact (a
    // made-up To tag must not skip authentication), are authenticated first.
    this.authenticateThen(request, st, (party) => {
      this.rememberContact(request, st.flow);
      if (!inDialog && this.sendToUserHome(request, st, ruri, party)) return;
      const service = this.opts.services[method];
      if (service) service.handle(request, st, party);
      else this.toLocalUser(request, st, ruri, party);
    });
  }

  /**
   * A mixed environment (docs/migration.md): a request for a user of the domain who lives in
   * another home goes to that home, or to the director when this home's store does not know
   * the user. Returns false when the request is served here.
   */
  private sendToUserHome(
    request: SipMessage,
    st: ServerTransaction,
    ruri: SipUri,
    party: AuthenticatedParty,
  ): boolean {
    const homes = this.opts.userHomes;
    if (!homes?.follows(request)) return false;
    const hop = homes.nextHop(
      uriAor(ruri),
      this.opts.isTrustedPeer?.(st.flow) === true,
      this.passedThroughUs(request),
    );
    if (hop === null) return false;
    if (typeof hop === 'string') {
      this.forwardToHome(request, st, hop, party);
      return true;
    }
    hop.then(
      (next) => {
        const service = this.opts.services[request.method];
        if (next !== null) this.forwardToHome(request, st, next, party);
        else if (service) service.handle(request, st, party);
        else this.toLocalUser(request, st, ruri, party);
      },
      (err: unknown) => {
        this.opts.log.warn({ err }, 'placement unavailable');
        st.reply(500, 'Placement Unavailable');
      },
    );
    return true;
  }

  /**
   * Sends a request to the home (or director) at `hop`, asserting the sender we authenticated
   * (RFC 3325): the next server trusts us as a peer (trustedPeers) and challenges nobody.
   * Dialog-forming requests are Record-Routed (forward), so in-dialog requests and NOTIFYs
   * come back through us to the sender's connection.
   */
  private forwardToHome(
    request: SipMessage,
    st: ServerTransaction,
    hop: string,
    party: AuthenticatedParty,
  ): void {
    if (party.aor) request.set('p-asserted-identity', `<sip:${party.aor}>`);
    this.forward(request, st, [{ uri: request.uri, resolve: () => this.reach(hop) }]);
  }

  /** Has this request been through this server before (a Via of ours below the sender's)? */
  private passedThroughUs(request: SipMessage): boolean {
    return request
      .getAll('via')
      .some((v) => [...v.matchAll(/branch=([^;,\s]+)/g)].some((m) => isOwnBranch(m[1])));
  }

  /**
   * A `presence@` Contact of another server on our host (LocalIdentity takes any port of our
   * host's `presence@` for us): several servers on one machine, homes on loopback in tests.
   */
  private namesAnotherServer(ruri: SipUri): boolean {
    return (
      ruri.user === 'presence' &&
      ruri.port !== undefined &&
      !this.opts.local.isUs({ ...ruri, user: undefined })
    );
  }

  onAck(ack: SipMessage, flow: Flow): void {
    // An ACK for a 2xx follows the dialog's route set, which we are on only if we Record-Routed
    // (and signed) it; an ACK cannot be challenged, so any other is dropped.
    const { signed } = this.removeOwnRoutes(ack);
    if (!(signed && ack.to.tag !== undefined) && !this.opts.isTrustedPeer?.(flow)) {
      this.opts.log.debug({ callId: ack.callId }, 'ACK outside a dialog we signed dropped');
      return;
    }
    const topRoute = ack.getAll('route')[0];
    const next = topRoute !== undefined ? parseNameAddr(topRoute)?.uri : ack.uri;
    if (!next) return;
    const mf = ack.maxForwards;
    if (mf !== undefined && mf <= 0) return;
    this.resolveUri(next).then(
      (out) => {
        const copy = ack.clone();
        copy.set('max-forwards', String(mf === undefined ? 70 : mf - 1));
        copy.prepend('via', this.opts.local.via(out, createBranch()));
        out.send(copy.toBuffer());
      },
      () => this.opts.log.debug({ callId: ack.callId }, 'ACK next hop unreachable'),
    );
    void flow;
  }

  onCancel(invite: ServerTransaction): void {
    const ctx = invite.context;
    if (ctx instanceof ProxyContext) ctx.cancel();
    else if (!invite.isFinal) invite.reply(487, 'Request Terminated');
  }

  onStrayResponse(response: SipMessage): void {
    // RFC 3261 16.7 / 16.11: a response with no transaction is forwarded statelessly by its Vias.
    if (!isOwnBranch(response.topVia?.branch)) return;
    const copy = response.clone();
    copy.removeFirst('via');
    const via = copy.topVia;
    if (!via) return;
    const transport = via.transport.toLowerCase() as TransportName;
    const host = via.received ?? via.host;
    const port = typeof via.rport === 'number' ? via.rport : (via.port ?? 5060);
    const flow = this.opts.transport.findFlow(transport, host, port);
    flow?.send(copy.toBuffer());
  }

  /** Authenticates out-of-dialog requests from local users: by the flow they registered on, else a 407 challenge. */
  private authenticateThen(
    request: SipMessage,
    st: ServerTransaction,
    then: (party: AuthenticatedParty) => void,
  ): void {
    const flow = st.flow;
    const fromUri = request.fromUri;
    const fromAor = fromUri ? uriAor(fromUri) : undefined;
    if (!fromUri || !fromAor) {
      st.reply(400, 'Bad Request - malformed From');
      return;
    }
    const trusted = this.opts.isTrustedPeer?.(flow) === true;
    if (fromUri.host.toLowerCase() !== this.opts.domain) {
      if (trusted) {
        this.proceed({ flow }, then);
        return;
      }
      st.reply(403, 'Forbidden - Unknown Sender Domain');
      return;
    }
    if (trusted) {
      // The edge vouches for a user it saw sign in on that user's own connection.
      if (assertedAor(request) === fromAor) {
        this.proceed({ flow, aor: fromAor }, then);
        return;
      }
    } else if (flow.authenticated.has(fromAor)) {
      // The usual case (a connection that signed in): no closure is made for what follows.
      this.proceed({ flow, aor: fromAor }, then);
      return;
    }
    this.challengeThen(request, st, fromAor, trusted, then);
  }

  /** The authenticated party goes on to `then`; its user counts as active. */
  private proceed(party: AuthenticatedParty, then: (party: AuthenticatedParty) => void): void {
    if (party.aor) this.opts.onUserActivity?.(party.aor);
    then(party);
  }

  /** authenticateThen for a sender this connection has not proved: its credentials are checked. */
  private challengeThen(
    request: SipMessage,
    st: ServerTransaction,
    fromAor: string,
    trusted: boolean,
    then: (party: AuthenticatedParty) => void,
  ): void {
    const flow = st.flow;
    const done = (outcome: AuthVerdict) => {
      if (outcome.ok) {
        if (outcome.aor !== fromAor) {
          st.reply(403, 'Forbidden - From does not match the authenticated user');
          return;
        }
        // A trusted peer's connection carries many users: it proves nothing about the next request.
        if (!trusted) flow.authenticated.add(fromAor);
        this.proceed({ flow, aor: fromAor }, then);
      } else if (outcome.status === 407) {
        st.reply(407, undefined, {
          headers: outcome.challenges.map((value) => ({ name: 'proxy-authenticate', value })),
        });
      } else if ('reason' in outcome) {
        st.reply(outcome.status, outcome.reason);
      } else {
        st.reply(401, undefined, {
          toTag: outcome.toTag,
          headers: outcome.challenges.map((value) => ({ name: 'www-authenticate', value })),
        });
      }
    };
    const outcome = this.opts.authenticator.authenticate(request, 'proxy', flow, st);
    if (outcome instanceof Promise) outcome.then(done, () => st.reply(500, 'Credential Store Unavailable'));
    else done(outcome);
  }

  private flowAor(request: SipMessage, flow: Flow): string | undefined {
    const uri = request.fromUri;
    const aor = uri ? uriAor(uri) : undefined;
    if (!aor) return undefined;
    if (this.opts.isTrustedPeer?.(flow)) return assertedAor(request) === aor ? aor : undefined;
    return flow.authenticated.has(aor) ? aor : undefined;
  }

  /** Proxies a request to every registered endpoint of a local user (RFC 3261 16.5-16.6). */
  toLocalUser(
    request: SipMessage,
    st: ServerTransaction,
    ruri: SipUri,
    _party: AuthenticatedParty | undefined,
  ): void {
    if (this.opts.routeToHome) {
      this.opts.routeToHome(request, st, ruri);
      return;
    }
    const aor = uriAor(ruri);
    const local = this.opts.location.lookup(aor);
    const remote = this.opts.remoteBindings;
    if (remote) {
      // A pool: the user's other endpoints may be connected to other front-ends.
      const others = remote(aor);
      if (!(others instanceof Promise)) {
        this.forwardOrAnswer(request, st, aor, others.length === 0 ? local : [...local, ...others]);
        return;
      }
      others.then(
        (found) => this.forwardOrAnswer(request, st, aor, [...local, ...found]),
        (err: unknown) => {
          this.opts.log.warn({ err }, 'pool registrations unavailable; local endpoints only');
          this.forwardOrAnswer(request, st, aor, local);
        },
      );
      return;
    }
    this.forwardOrAnswer(request, st, aor, local);
  }

  private forwardOrAnswer(
    request: SipMessage,
    st: ServerTransaction,
    aor: string,
    bindings: ContactBinding[],
  ): void {
    if (bindings.length > 0) {
      this.forward(
        request,
        st,
        bindings.map((b) => this.bindingTarget(b)),
      );
      return;
    }
    const exists = this.opts.userExists(aor);
    const answer = (known: boolean) => {
      if (known) st.reply(480, 'Temporarily Unavailable');
      else st.reply(404, 'Not Found');
    };
    if (exists instanceof Promise) exists.then(answer, () => st.reply(500, 'Server Internal Error'));
    else answer(exists);
  }

  forward(request: SipMessage, st: ServerTransaction, targets: ForwardTarget[]): ProxyContext {
    const method = request.method;
    // The client address is for the home's authenticator: a director passes it on, a home keeps it.
    if (!this.opts.routeToHome && request.has(CLIENT_ADDRESS_HEADER)) request.remove(CLIENT_ADDRESS_HEADER);
    const dialogForming =
      request.to.tag === undefined && (method === 'INVITE' || method === 'SUBSCRIBE' || method === 'REFER');
    const ctx = new ProxyContext(st, this.opts.transactions, this.opts.local, this.opts.log, {
      recordRoute: dialogForming ? this.opts.routeSigner.sign(request) : undefined,
      onFinal: (status) => this.opts.onForwardFinal?.(method, status),
      onBranchResponse: dialogForming ? (res, flow) => this.rememberResponseContact(res, flow) : undefined,
    });
    ctx.start(targets);
    return ctx;
  }

  bindingTarget(b: ContactBinding): ForwardTarget {
    return {
      uri: b.contact,
      route: b.path.length > 0 ? b.path : undefined,
      resolve: () => {
        if (b.path.length > 0) {
          const first = parseNameAddr(b.path[0])?.uri;
          if (first) return this.reach(first);
        }
        if (b.flowId) {
          const flow = this.opts.transport.flow(b.flowId);
          if (flow && !flow.closed) return flow;
          if (b.flowOnly) return Promise.reject(new Error('flow closed'));
        }
        return this.reach(b.contact);
      },
    };
  }

  /** Sends a request onward by its Route set or Request-URI (in-dialog requests, RFC 3261 16.6 step 7). */
  private routeOnward(request: SipMessage, st: ServerTransaction): void {
    const top = request.getAll('route')[0];
    const hop = (top !== undefined ? parseNameAddr(top)?.uri : undefined) ?? request.uri;
    this.forward(request, st, [{ uri: request.uri, resolve: () => this.reach(hop) }]);
  }

  /** A flow to the next hop named by a URI: a known client flow, or a new connection (RFC 3263 without DNS). */
  resolveUri(uriText: string): Promise<Flow> {
    const reached = this.reach(uriText);
    return reached instanceof Promise ? reached : Promise.resolve(reached);
  }

  /**
   * resolveUri for a forward target: the flow itself when one is open to the URI's address,
   * a promise only when a connection has to be made (or the URI cannot be reached). The last
   * URI reached is remembered with its flow while that stays open: a run of requests to one
   * endpoint parses its contact once.
   */
  private reach(uriText: string): Flow | Promise<Flow> {
    const known = this.contactFlows.get(uriText);
    if (known && !known.closed) return known;
    const last = this.lastReached;
    if (last !== undefined && last.uri === uriText && !last.flow.closed) return last.flow;
    const uri = parseUri(uriText);
    if (!uri) return Promise.reject(new Error(`bad URI ${uriText}`));
    const transportParam = (uri.params.transport ?? '').toLowerCase();
    if (uri.host.endsWith('.invalid') || transportParam === 'ws' || transportParam === 'wss') {
      return Promise.reject(new Error(`${uriText} is reachable only over its own flow`));
    }
    const transport: TransportName =
      uri.scheme === 'sips' || transportParam === 'tls'
        ? 'tls'
        : transportParam === 'tcp'
          ? 'tcp'
          : // RFC 3263 4.1: a sip: URI naming no transport means UDP, when we speak it.
            this.opts.local.portFor('udp') !== undefined &&
              (transportParam === '' || transportParam === 'udp')
            ? 'udp'
            : 'tcp';
    const port = uri.port ?? (transport === 'tls' ? 5061 : 5060);
    const open = this.opts.transport.findFlow(transport, uri.host, port);
    if (open === undefined) return this.opts.transport.connect(transport, uri.host, port);
    this.lastReached = { uri: ownString(uriText), flow: open };
    return open;
  }

  private lastReached: { uri: string; flow: Flow } | undefined;

  /** RFC 3261 11.2: what this server accepts, in Allow, Accept and Supported. */
  private answerOptions(st: ServerTransaction): void {
    st.reply(200, undefined, {
      headers: [
        { name: 'allow', value: ALLOW },
        { name: 'accept', value: 'application/sdp, text/plain, application/pidf+xml' },
        { name: 'supported', value: SUPPORTED },
      ],
    });
  }

  private checkMaxForwards(request: SipMessage, st: ServerTransaction): boolean {
    const mf = request.maxForwards;
    if (mf !== undefined && mf <= 0) {
      st.reply(483, 'Too Many Hops');
      return false;
    }
    return true;
  }

  private isLoop(request: SipMessage): boolean {
    // One Via (a request straight from its client): no array to split it into.
    if (!request.hasSeveral('via')) return false;
    const vias = request.getAll('via');
    if (vias.length < 2) return false;
    let ours = 0;
    for (const v of vias)
      if (v.includes('branch=z9hG4bK') && isOwnBranch(/branch=([^;,\s]+)/.exec(v)?.[1])) ours++;
    // A request may legitimately spiral through us a few times (double Record-Route, edge ->
    // director -> home on one box); more than that with hops to spare is a loop.
    return ours >= 4;
  }

  /**
   * Pops the Route entries naming us (RFC 3261 16.4). Says whether one of them carried our
   * signature for this request's dialog, and which flow a popped flow token pins it to.
   */
  private removeOwnRoutes(request: SipMessage): { pinned?: string; signed: boolean } {
    let pinned: string | undefined;
    let signed = false;
    for (;;) {
      const top = request.getAll('route')[0];
      if (top === undefined) break;
      const parsed = parseNameAddr(top, routeUri) === undefined ? undefined : routeUri.uri;
      if (!parsed) break;
      const flowId = this.opts.flowTokens?.verify(parsed.user);
      if (flowId !== undefined) pinned = flowId;
      else if (!this.opts.local.isUs(parsed)) break;
      else if (this.opts.routeSigner.verify(request, parsed.params[DIALOG_ROUTE_PARAM] ?? undefined))
        signed = true;
      request.removeFirst('route');
    }
    return { pinned, signed };
  }

  private flowOrFail(flowId: string): Flow | Promise<Flow> {
    const flow = this.opts.transport.flow(flowId);
    return flow && !flow.closed ? flow : Promise.reject(new Error('flow gone'));
  }

  /**
   * Remembers which flow a dialog-forming request's Contact lives on, for in-dialog requests
   * to clients only their flow reaches. Only for authenticated flows, and never taking a
   * contact over from another live flow.
   */
  private rememberContact(request: SipMessage, flow: Flow): void {
    const m = request.method;
    if (m !== 'INVITE' && m !== 'SUBSCRIBE' && m !== 'REFER' && m !== 'UPDATE') return;
    if (flow.authenticated.size === 0) return;
    const uri = request.contacts[0]?.uri;
    if (!uri || uri === '*') return;
    const known = this.contactFlows.get(uri);
    if (known && known !== flow && !known.closed) return;
    this.contactFlows.set(uri, flow);
  }

  /** Responses from dialog-forming requests carry the callee's Contact; remember its flow too. */
  rememberResponseContact(response: SipMessage, flow: Flow): void {
    const uri = response.contacts[0]?.uri;
    if (uri && uri !== '*') this.contactFlows.set(uri, flow);
  }
}
