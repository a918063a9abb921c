import type { Logger } from 'pino';
import type { EdgeConfig } from '../ops/config.js';
import type { EdgeRefusal } from '../ops/metrics.js';
import { CLIENT_ADDRESS_HEADER } from '../proxy/core.js';
import type { FlowTokens } from '../proxy/flow-token.js';
import { type ForwardOptions, type ForwardTarget, ProxyContext } from '../proxy/forward.js';
import { DIALOG_ROUTE_PARAM, type DialogRouteSigner } from '../proxy/record-route.js';
import { createBranch, createTag, isOwnBranch } from '../sip/ids.js';
import { SipMessage } from '../sip/message.js';
import { formatNameAddr, parseNameAddr } from '../sip/nameaddr.js';
import { formatUri, parseUri, type SipUri, uriAor } from '../sip/uri.js';
import type { ServerTransaction, TransactionLayer, TransactionUser } from '../transaction/layer.js';
import type { Flow } from '../transport/flow.js';
import type { TransportLayer } from '../transport/layer.js';
import type { EdgeIdentity, EdgeSide } from './identity.js';
import type { PartnerDirectory } from './partners.js';
import { RateLimiter } from './rate.js';
import type { RefusalLog } from './refusals.js';
import type { TopologySeal } from './seal.js';

/** Record-Route URI parameter carrying the sealed inside part of a route set. */
const SEALED_ROUTE_PARAM = 'tk';
/** User-part prefix of a Contact the edge sealed. */
const SEALED_CONTACT_PREFIX = 'ct.';
const DIALOG_FORMING = new Set(['INVITE', 'SUBSCRIBE', 'REFER']);

export interface EdgeRouterOptions {
  domain: string;
  local: EdgeIdentity;
  transactions: TransactionLayer;
  transport: TransportLayer;
  partners: PartnerDirectory;
  /** The inside next hop (a director or a pool) for everything coming from outside. */
  next: string;
  flowTokens: FlowTokens;
  routeSigner: DialogRouteSigner;
  seal: TopologySeal;
  limits: EdgeConfig;
  refusals: RefusalLog;
  onRefusal(reason: EdgeRefusal): void;
  sideOf(flow: Flow): EdgeSide;
  /** Remember that we dialled this flow towards that side. */
  dialled(flow: Flow, side: EdgeSide): void;
  log: Logger;
}

/** What popping our own Route entries found. */
interface PoppedRoutes {
  /** A flow token from a Path: the remote user's connection. */
  pinned?: string;
  /** One of the Routes was our Record-Route signed for this request's dialog. */
  signed: boolean;
}

/**
 * The edge's transaction user. Everything from outside (remote users) and from partners'
 * edges goes to the inside next hop once checked: the edge authenticates nobody itself and
 * never sees a credential, the home's registrar and proxy challenge end to end. What comes
 * from inside goes out over a remote user's own connection (a flow token in the Path the
 * edge added to its REGISTER) or to a partner's edge over mutual TLS. Whatever leaves
 * carries no inside address: Vias are kept here and put back on the responses,
 * Record-Route entries and Contacts of the inside are sealed into tokens only an edge of
 * this deployment opens (docs/edge.md).
 */
export class EdgeRouter implements TransactionUser {
  private readonly rate = new RateLimiter();
  /** Contact URI -> the outside or partner connection it was seen on (in-dialog requests go back there). */
  private readonly contactFlows = new Map<string, Flow>();
  /** Notices of closed connections not yet answered (remoteUserGone): a drain waits for them. */
  private readonly notices = new Set<Promise<void>>();
  /** Addresses where someone has signed in: past the slow start. */
  private readonly knownAddresses = new Map<string, number>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly opts: EdgeRouterOptions) {
    this.sweep = setInterval(() => {
      for (const [contact, flow] of this.contactFlows) if (flow.closed) this.contactFlows.delete(contact);
      const old = Date.now() - 3_600_000;
      for (const [address, at] of this.knownAddresses) if (at < old) this.knownAddresses.delete(address);
    }, 30_000);
    this.sweep.unref();
  }

  stop(): void {
    clearInterval(this.sweep);
  }

  onRequest(request: SipMessage, st: ServerTransaction): void {
    const flow = st.flow;
    const side = this.opts.sideOf(flow);
    const mf = request.maxForwards;
    if (mf !== undefined && mf <= 0) {
      st.reply(483, 'Too Many Hops');
      return;
    }
    if (side !== 'inside') {
      // RFC 3325 9.1: nobody outside the trust domain asserts an identity.
      request.remove('p-asserted-identity');
      // The home counts password guesses per client, not per edge (docs/edge.md); whatever
      // the client wrote there is replaced.
      request.set(CLIENT_ADDRESS_HEADER, flow.remoteAddress);
      if (!this.admit(flow, side)) {
        this.refuse(st, 'rate_address', undefined, 'too many requests from this address', 503);
        return;
      }
    }
    if (this.isLoop(request)) {
      st.reply(482, 'Loop Detected');
      return;
    }
    const popped = this.popOwnRoutes(request, side);
    this.restoreRequestUri(request);
    if (side === 'inside') this.fromInside(request, st, popped);
    else if (side === 'outside') this.fromOutside(request, st, popped);
    else this.fromPartner(request, st, popped).catch((err: unknown) => this.failed(st, err));
  }

  /** A remote user: REGISTER gets a Path back to its connection; everything goes inside. */
  private fromOutside(request: SipMessage, st: ServerTransaction, popped: PoppedRoutes): void {
    const flow = st.flow;
    const from = request.fromUri;
    if (!from || from.host.toLowerCase() !== this.opts.domain) {
      this.refuse(st, 'wrong_side', from?.host, `only users of ${this.opts.domain} sign in here`);
      return;
    }
    const fromAor = uriAor(from);
    if (request.method === 'REGISTER') {
      this.forwardInside(request, st, popped, {
        rewriteRequest: (req, insideFlow) => {
          // RFC 3327 4.3: our Path, naming the user's own connection (RFC 5626 5.3 flow token).
          req.prepend('path', this.opts.local.pathTo(insideFlow, this.opts.flowTokens.token(flow.id)));
        },
        rewriteResponse: (res) => {
          if (res.status >= 200 && res.status < 300) {
            // The home's registrar accepted the user's digest answer on this connection.
            const to = request.toUri;
            if (to) flow.authenticated.add(uriAor(to));
            this.knownAddresses.set(flow.remoteAddress, Date.now());
          }
          this.hideResponse(res, st, request);
        },
      });
      return;
    }
    // The edge vouches only for what it saw the home accept on this very connection.
    if (flow.authenticated.has(fromAor)) request.set('p-asserted-identity', `<sip:${fromAor}>`);
    this.rememberContact(request, flow);
    this.forwardInside(request, st, popped, {
      rewriteResponse: (res) => this.hideResponse(res, st, request),
    });
  }

  /** A partner's edge (or the clearinghouse): the policy decides, then everything goes inside. */
  private async fromPartner(request: SipMessage, st: ServerTransaction, popped: PoppedRoutes): Promise<void> {
    const flow = st.flow;
    const from = request.fromUri;
    const domain = from?.host.toLowerCase() ?? '';
    const decision = await this.opts.partners.inbound(domain, flow.peerNames);
    if (!decision.ok) {
      this.refuse(st, decision.refusal, domain, decision.warning);
      return;
    }
    const spec = { rate: this.opts.limits.partnerRequestsPerSecond, burst: this.opts.limits.partnerBurst };
    if (!this.rate.take(`partner:${domain}`, spec)) {
      this.refuse(st, 'rate_partner', domain, `too many requests from ${domain}`, 503);
      return;
    }
    const ruri = request.requestUri;
    if (request.method === 'OPTIONS' && !popped.signed && ruri && !ruri.user && this.isOurHost(ruri)) {
      // RFC 3261 11: an OPTIONS to the edge itself (`parley federation test`) is answered here.
      st.reply(200, undefined, { headers: [{ name: 'accept', value: 'application/pidf+xml, text/plain' }] });
      return;
    }
    if (!popped.signed && (!ruri || ruri.host.toLowerCase() !== this.opts.domain)) {
      this.refuse(st, 'relaying', domain, `this edge serves ${this.opts.domain} only`);
      return;
    }
    this.rememberContact(request, flow);
    this.forwardInside(request, st, popped, {
      rewriteResponse: (res) => this.hideResponse(res, st, request),
    });
  }

  /** From the servers inside: to a remote user's connection, or out to a partner. */
  private fromInside(request: SipMessage, st: ServerTransaction, popped: PoppedRoutes): void {
    const restore: ForwardOptions = {
      hideVias: true,
      rewriteRequest: (req, out) => this.hideRequest(req, out),
      rewriteResponse: (res) => this.restoreResponse(res),
      onBranchResponse: (res, out) => {
        if (DIALOG_FORMING.has(request.method)) this.rememberResponseContact(res, out);
      },
    };
    if (popped.pinned !== undefined) {
      const pinned = this.opts.transport.flow(popped.pinned);
      const target: ForwardTarget = {
        uri: request.uri,
        resolve: () =>
          pinned && !pinned.closed ? Promise.resolve(pinned) : Promise.reject(new Error('remote user gone')),
      };
      this.forward(request, st, [target], restore);
      return;
    }
    // A dialog with a partner: the partner must still be allowed.
    const peerDomain = request.to.tag !== undefined ? request.toUri?.host.toLowerCase() : undefined;
    if (peerDomain && peerDomain !== this.opts.domain) {
      const route = this.opts.partners.policy.outbound(peerDomain);
      if (route.kind === 'refused') {
        this.refuse(st, route.refusal, peerDomain, route.warning);
        return;
      }
    }
    const top = request.getAll('route')[0];
    if (top !== undefined || request.to.tag !== undefined) {
      const hop = (top !== undefined ? parseNameAddr(top)?.uri : undefined) ?? request.uri;
      this.forward(request, st, [{ uri: request.uri, resolve: () => this.resolveOutward(hop) }], {
        ...restore,
        timeoutStatus: 504,
      });
      return;
    }
    const ruri = request.requestUri;
    if (!ruri || ruri.host.toLowerCase() === this.opts.domain) {
      st.reply(404, 'Not Found');
      return;
    }
    this.toPartner(request, st, ruri.host.toLowerCase(), restore).catch((err: unknown) =>
      this.failed(st, err),
    );
  }

  /** Out of a dialog, to a partner's edge: pinned FQDN, SRV, or the clearinghouse; 502 when none answers. */
  private async toPartner(
    request: SipMessage,
    st: ServerTransaction,
    domain: string,
    restore: ForwardOptions,
  ): Promise<void> {
    const decision = await this.opts.partners.outbound(domain);
    if (!decision.ok) {
      if (decision.refusal === 'no_route') {
        this.opts.log.warn({ domain, detail: decision.warning }, 'no route to a partner');
        st.reply(502, 'Bad Gateway - no route to the partner', { headers: [this.warning(decision.warning)] });
        return;
      }
      this.refuse(st, decision.refusal, domain, decision.warning);
      return;
    }
    let flow: Flow | undefined;
    const errors: string[] = [];
    for (const target of decision.targets) {
      try {
        const address = await this.opts.partners.address(target.host);
        flow = await this.opts.transport.connect('tls', address, target.port, target.host);
        this.opts.dialled(flow, 'federation');
        break;
      } catch (err) {
        errors.push(`${target.host}:${target.port} (${target.via}): ${(err as Error).message}`);
      }
    }
    if (!flow) {
      this.opts.log.warn({ domain, errors }, 'partner edge unreachable');
      st.reply(502, 'Bad Gateway - partner edge unreachable', {
        headers: [this.warning(`${domain}: ${errors.join('; ')}`)],
      });
      return;
    }
    const out = flow;
    this.forward(request, st, [{ uri: request.uri, resolve: () => Promise.resolve(out) }], {
      ...restore,
      timeoutStatus: 504,
    });
  }

  private forwardInside(
    request: SipMessage,
    st: ServerTransaction,
    popped: PoppedRoutes,
    options: ForwardOptions,
  ): void {
    let hop = this.opts.next;
    if (!popped.signed) {
      // Routes an outsider wrote are not followed: that would let anyone reach any inside host.
      request.remove('route');
    } else {
      const top = request.getAll('route')[0];
      if (top !== undefined) hop = parseNameAddr(top)?.uri ?? hop;
      else if (request.to.tag !== undefined) hop = request.uri;
    }
    this.forward(request, st, [{ uri: request.uri, resolve: () => this.resolveInside(hop) }], options);
  }

  private forward(
    request: SipMessage,
    st: ServerTransaction,
    targets: ForwardTarget[],
    options: ForwardOptions,
  ): void {
    const dialogForming = request.to.tag === undefined && DIALOG_FORMING.has(request.method);
    const ctx = new ProxyContext(st, this.opts.transactions, this.opts.local, this.opts.log, {
      ...options,
      recordRoute: dialogForming ? this.opts.routeSigner.sign(request) : undefined,
      doubleRecordRoute: true,
    });
    ctx.start(targets);
  }

  onAck(ack: SipMessage, flow: Flow): void {
    const side = this.opts.sideOf(flow);
    const { signed } = this.popOwnRoutes(ack, side);
    // An ACK cannot be challenged: only along a dialog we signed, or from inside.
    if (!signed && side !== 'inside') return;
    this.restoreRequestUri(ack);
    const top = ack.getAll('route')[0];
    const hop = (top !== undefined ? parseNameAddr(top)?.uri : undefined) ?? ack.uri;
    const mf = ack.maxForwards;
    if (mf !== undefined && mf <= 0) return;
    const outward = side === 'inside';
    const resolved = outward ? this.resolveOutward(hop) : this.resolveInside(hop);
    resolved.then(
      (out) => {
        const copy = ack.clone();
        copy.set('max-forwards', String(mf === undefined ? 70 : mf - 1));
        if (outward) copy.remove('via');
        copy.prepend('via', this.opts.local.via(out, createBranch()));
        if (outward) this.hideRequest(copy, out);
        out.send(copy.toBuffer());
      },
      () => this.opts.log.debug({ callId: ack.callId }, 'ACK next hop unreachable'),
    );
  }

  onCancel(invite: ServerTransaction): void {
    const ctx = invite.context;
    if (ctx instanceof ProxyContext) ctx.cancel();
    else if (!invite.isFinal) invite.reply(487, 'Request Terminated');
  }

  onStrayResponse(response: SipMessage): void {
    // Stateless forwarding would need the Vias the edge hid: a stray response goes no further.
    this.opts.log.debug({ callId: response.callId, status: response.status }, 'stray response dropped');
  }

  /** Token buckets per address; an address where nobody has signed in yet is held to the slow-start rate. */
  private admit(flow: Flow, side: EdgeSide): boolean {
    const l = this.opts.limits;
    const address = flow.remoteAddress;
    if (side === 'federation')
      return this.rate.take(address, { rate: l.partnerRequestsPerSecond, burst: l.partnerBurst });
    const known = flow.authenticated.size > 0 || this.knownAddresses.has(address);
    return known
      ? this.rate.take(address, { rate: l.requestsPerSecond, burst: l.burst })
      : this.rate.take(`new:${address}`, {
          rate: l.unknownRequestsPerSecond,
          burst: l.unknownRequestsPerSecond * 2,
        });
  }

  private refuse(
    st: ServerTransaction,
    reason: EdgeRefusal,
    domain: string | undefined,
    detail: string,
    status = 403,
  ): void {
    this.opts.onRefusal(reason);
    this.opts.refusals.report(reason, st.flow.remoteAddress, domain, detail);
    const headers = [this.warning(detail)];
    if (status === 503) headers.push({ name: 'retry-after', value: '1' });
    st.reply(status, status === 503 ? 'Service Unavailable - rate limited' : 'Forbidden', { headers });
  }

  /** RFC 3261 20.43: warn-code 399 (miscellaneous), warn-agent this edge's public name. */
  private warning(text: string): { name: string; value: string } {
    const agent = this.opts.local.advertiseHost ?? this.opts.domain;
    return { name: 'warning', value: `399 ${agent} "${text.replace(/["\\\r\n]/g, "'")}"` };
  }

  private failed(st: ServerTransaction, err: unknown): void {
    this.opts.log.error({ err }, 'edge routing failed');
    if (!st.isFinal) st.reply(500, 'Server Internal Error');
  }

  private isOurHost(uri: SipUri): boolean {
    return this.opts.local.isUs(uri);
  }

  private isLoop(request: SipMessage): boolean {
    let ours = 0;
    for (const v of request.getAll('via'))
      if (v.includes('branch=z9hG4bK') && isOwnBranch(/branch=([^;,\s]+)/.exec(v)?.[1])) ours++;
    return ours >= 4;
  }

  /**
   * Pops the Route entries naming this edge (RFC 3261 16.4). A flow token counts only from
   * inside; an entry with a sealed inside route set is opened only when its dialog
   * signature holds for this request, and its routes take its place.
   */
  private popOwnRoutes(request: SipMessage, side: EdgeSide): PoppedRoutes {
    const popped: PoppedRoutes = { signed: false };
    for (;;) {
      const top = request.getAll('route')[0];
      if (top === undefined) break;
      const na = parseNameAddr(top);
      const uri = na ? parseUri(na.uri) : undefined;
      if (!uri) break;
      const flowId = this.opts.flowTokens.verify(uri.user);
      if (flowId !== undefined) {
        if (side === 'inside') popped.pinned = flowId;
      } else if (uri.user !== this.opts.local.rrUser && !this.opts.local.isUs(uri)) {
        break;
      }
      request.removeFirst('route');
      if (flowId !== undefined) continue;
      const signedHere = this.opts.routeSigner.verify(request, uri.params[DIALOG_ROUTE_PARAM] ?? undefined);
      if (!signedHere) continue;
      popped.signed = true;
      const sealed = this.opts.seal.open(uri.params[SEALED_ROUTE_PARAM]);
      if (sealed !== undefined) {
        const routes = JSON.parse(sealed) as string[];
        for (let i = routes.length - 1; i >= 0; i--) request.prepend('route', routes[i]);
      }
    }
    return popped;
  }

  /** A Request-URI naming a Contact we sealed gets the inside Contact back. */
  private restoreRequestUri(request: SipMessage): void {
    const ruri = request.requestUri;
    if (!ruri?.user?.startsWith(SEALED_CONTACT_PREFIX)) return;
    const original = this.opts.seal.open(ruri.user.slice(SEALED_CONTACT_PREFIX.length));
    if (original !== undefined) request.uri = original;
  }

  /**
   * A request leaving for outside: its Record-Route is cut to our own entry, carrying the
   * rest (the inside's) sealed; its Contacts are sealed; no asserted identity or client address leaves.
   * Vias are already ours alone (ForwardOptions.hideVias).
   */
  private hideRequest(req: SipMessage, out: Flow): void {
    req.remove('p-asserted-identity');
    req.remove(CLIENT_ADDRESS_HEADER);
    const rr = req.getAll('record-route');
    if (rr.length > 0) {
      req.remove('record-route');
      const [mine, ...inside] = rr;
      if (this.isOwnRoute(mine)) req.append('record-route', this.withSealedRoutes(mine, inside));
    }
    this.sealContacts(req, out, new Set());
  }

  /**
   * A response going back outside: Record-Route entries above our outside-facing one are the
   * inside's (RFC 3261 16.6 step 4 order), sealed into that entry in the order the outside
   * party will use them as its route set; Contacts sealed except the outside party's own
   * (a REGISTER's 200 lists them back); no Path or asserted identity.
   */
  private hideResponse(res: SipMessage, st: ServerTransaction, request: SipMessage): void {
    res.remove('p-asserted-identity');
    res.remove('path');
    const rr = res.getAll('record-route');
    const signature = rr.length > 0 ? this.opts.routeSigner.sign(request) : undefined;
    if (signature !== undefined) {
      // Our entry facing the outside party, exactly as ProxyContext wrote it.
      const mineAt = rr.lastIndexOf(this.opts.local.recordRoute(st.flow, signature));
      if (mineAt >= 0) {
        const inside = rr.slice(0, mineAt).reverse();
        res.remove('record-route');
        res.append('record-route', this.withSealedRoutes(rr[mineAt], inside));
        for (const r of rr.slice(mineAt + 1)) res.append('record-route', r);
      }
    }
    const own = new Set(request.contacts.map((c) => c.uri));
    this.sealContacts(res, st.flow, own);
  }

  /** A response from outside going in: our sealed Record-Route entries opened again. */
  private restoreResponse(res: SipMessage): void {
    const rr = res.getAll('record-route');
    if (!rr.some((r) => r.includes(`${SEALED_ROUTE_PARAM}=`))) return;
    res.remove('record-route');
    for (const r of rr) {
      const na = parseNameAddr(r);
      const uri = na ? parseUri(na.uri) : undefined;
      const sealed =
        uri && this.isOwnRoute(r) ? this.opts.seal.open(uri.params[SEALED_ROUTE_PARAM]) : undefined;
      if (!uri || !na || sealed === undefined) {
        res.append('record-route', r);
        continue;
      }
      delete uri.params[SEALED_ROUTE_PARAM];
      res.append('record-route', formatNameAddr({ ...na, uri: formatUri(uri) }));
      // Sealed in route-set order for the outside UAS, which is this list's order below us.
      for (const inner of JSON.parse(sealed) as string[]) res.append('record-route', inner);
    }
  }

  private withSealedRoutes(mine: string, inside: string[]): string {
    if (inside.length === 0) return mine;
    const na = parseNameAddr(mine);
    const uri = na ? parseUri(na.uri) : undefined;
    if (!na || !uri) return mine;
    uri.params[SEALED_ROUTE_PARAM] = this.opts.seal.seal(JSON.stringify(inside));
    return formatNameAddr({ ...na, uri: formatUri(uri) });
  }

  private isOwnRoute(value: string): boolean {
    const na = parseNameAddr(value);
    const uri = na ? parseUri(na.uri) : undefined;
    return uri?.user === this.opts.local.rrUser;
  }

  private sealContacts(message: SipMessage, out: Flow, keep: Set<string>): void {
    const contacts = message.contacts;
    if (contacts.length === 0 || contacts[0].uri === '*') return;
    message.remove('contact');
    for (const c of contacts) {
      // A Contact already sealed (by us on an earlier pass, or by a partner's edge) stays.
      if (keep.has(c.uri) || parseUri(c.uri)?.user?.startsWith(SEALED_CONTACT_PREFIX)) {
        message.append('contact', formatNameAddr(c));
        continue;
      }
      const sealed = `sip:${SEALED_CONTACT_PREFIX}${this.opts.seal.seal(c.uri)}@${this.opts.local.hostFor(out)}:${this.opts.local.portOn(out)};transport=${out.transport}`;
      message.append('contact', formatNameAddr({ ...c, uri: sealed }));
    }
  }

  private rememberContact(request: SipMessage, flow: Flow): void {
    if (!DIALOG_FORMING.has(request.method) && request.method !== 'UPDATE') return;
    const uri = request.contacts[0]?.uri;
    if (uri && uri !== '*') this.contactFlows.set(uri, flow);
  }

  private rememberResponseContact(response: SipMessage, flow: Flow): void {
    const uri = response.contacts[0]?.uri;
    if (uri && uri !== '*' && this.opts.sideOf(flow) !== 'inside') this.contactFlows.set(uri, flow);
  }

  /**
   * A remote user's own connection closed: tell each home it signed in to, so the bindings
   * registered through this connection's Path go (after the home's connection grace) and its
   * watchers see it offline. The notice is a REGISTER the home's registrar accepts from a
   * trusted peer only: `Contact: *`, `Expires: 0`, the Path naming the connection and the
   * user's P-Asserted-Identity (src/registrar/registrar.ts, pathFlowGone).
   */
  remoteUserGone(flow: Flow): void {
    if (this.opts.sideOf(flow) !== 'outside') return;
    const token = this.opts.flowTokens.token(flow.id);
    for (const aor of flow.authenticated) {
      let settle!: () => void;
      const answered = new Promise<void>((resolve) => {
        settle = resolve;
      });
      this.notices.add(answered);
      void answered.then(() => this.notices.delete(answered));
      this.resolveInside(this.opts.next).then(
        (inside) => {
          const notice = SipMessage.request('REGISTER', `sip:${this.opts.domain}`, [
            { name: 'via', value: this.opts.local.via(inside, createBranch()) },
            { name: 'max-forwards', value: '70' },
            { name: 'from', value: formatNameAddr({ uri: `sip:${aor}`, params: { tag: createTag() } }) },
            { name: 'to', value: `<sip:${aor}>` },
            { name: 'call-id', value: `${createTag()}@${this.opts.domain}` },
            { name: 'cseq', value: '1 REGISTER' },
            { name: 'contact', value: '*' },
            { name: 'expires', value: '0' },
            { name: 'path', value: this.opts.local.pathTo(inside, token) },
            { name: 'p-asserted-identity', value: `<sip:${aor}>` },
          ]);
          this.opts.transactions.request(notice, inside, {
            onResponse: (res) => {
              if (res.status < 200) return;
              settle();
              if (res.status >= 300)
                this.opts.log.warn(
                  { user: aor, status: res.status },
                  'home refused the notice of a closed connection',
                );
            },
            onTimeout: () => {
              settle();
              this.opts.log.warn({ user: aor }, 'home did not answer the notice of a closed connection');
            },
          });
        },
        (err: unknown) => {
          settle();
          this.opts.log.warn({ err, user: aor }, 'inside unreachable: a closed connection not announced');
        },
      );
    }
  }

  /** Resolves once every notice of a closed connection sent so far has been answered or has timed out. */
  async noticesSettled(): Promise<void> {
    await Promise.all([...this.notices]);
  }

  /** A connection to an inside server named by a URI (the next hop, an inside Route or Contact). */
  private resolveInside(uriText: string): Promise<Flow> {
    const uri = parseUri(uriText);
    if (!uri) return Promise.reject(new Error(`bad URI ${uriText}`));
    const tls = uri.scheme === 'sips' || (uri.params.transport ?? '').toLowerCase() === 'tls';
    const connecting = this.opts.transport.connect(
      tls ? 'tls' : 'tcp',
      uri.host,
      uri.port ?? (tls ? 5061 : 5060),
    );
    return connecting.then((flow) => {
      if (flow.listener === undefined) this.opts.dialled(flow, 'inside');
      return flow;
    });
  }

  /** A connection outward: a remote user's or partner's known connection, else mutual TLS to the URI's host. */
  private resolveOutward(uriText: string): Promise<Flow> {
    const known = this.contactFlows.get(uriText);
    if (known && !known.closed) return Promise.resolve(known);
    const uri = parseUri(uriText);
    if (!uri) return Promise.reject(new Error(`bad URI ${uriText}`));
    const transport = (uri.params.transport ?? '').toLowerCase();
    if (uri.host.endsWith('.invalid') || transport === 'ws' || transport === 'wss') {
      return Promise.reject(new Error(`${uriText} is reachable only over its own connection`));
    }
    // Towards partners the edge speaks mutual TLS only, whatever the URI says.
    return this.opts.partners.address(uri.host).then((address) =>
      this.opts.transport
        .connect('tls', address, uri.port ?? 5061, address === uri.host ? undefined : uri.host)
        .then((flow) => {
          if (flow.listener === undefined) this.opts.dialled(flow, 'federation');
          return flow;
        }),
    );
  }
}
