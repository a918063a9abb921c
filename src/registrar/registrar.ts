import { hostReference } from '../sip/host.js';
import { createTag } from '../sip/ids.js';
import type { SipHeader, SipMessage } from '../sip/message.js';
import { formatNameAddr, type NameAddr, parseNameAddr } from '../sip/nameaddr.js';
import { ownString, StringPool } from '../sip/own-string.js';
import { parseUri, type SipUri, uriAor } from '../sip/uri.js';
import type { ServerTransaction } from '../transaction/layer.js';
import type { Flow } from '../transport/flow.js';
import type { Authenticator, AuthOutcome } from './authenticator.js';
import type { Binding, LocationTable } from './location.js';
import type { SignInLog } from './sign-in-log.js';

export interface RegistrarOptions {
  domain: string;
  serverId: string;
  minExpires: number;
  maxExpires: number;
  defaultExpires: number;
  maxBindingsPerAor?: number;
  authenticator: Authenticator;
  location: LocationTable;
  now?: () => number;
  /** A user registered (or refreshed): for the active-users metric. */
  onRegistered?: (aor: string) => void;
  /** The edge and directors (`trustedPeers`): they may say a remote user's connection has gone. */
  isTrustedPeer?(flow: Flow): boolean;
  /** Where sign-ins are logged (sign-outs are seen on the location table). */
  signIns?: SignInLog;
}

/** Extensions a REGISTER may Require of us (RFC 3261 10.3 step 2). */
const SUPPORTED = new Set(['path', 'outbound', 'gruu']);

/** The Path of most bindings (and the Require of most REGISTERs): none, shared rather than an empty array each. */
const NO_PATH: string[] = [];

const DIGEST_SCHEME = /^\s*digest\s/i;

/**
 * The registrar (RFC 3261 10.3), with RFC 5626 outbound bindings and RFC 3327 Path.
 */
export class Registrar {
  private readonly now: () => number;
  private readonly maxBindings: number;
  /** A deployment's clients send a few User-Agents: each kept once, not once per binding. */
  private readonly userAgents = new StringPool();

  constructor(private readonly opts: RegistrarOptions) {
    this.now = opts.now ?? Date.now;
    this.maxBindings = opts.maxBindingsPerAor ?? 10;
  }

  handle(request: SipMessage, st: ServerTransaction): void {
    // Step 1: the Request-URI names a domain we are responsible for.
    const ruri = request.requestUri;
    if (!ruri || ruri.host.toLowerCase() !== this.opts.domain) {
      st.reply(404, 'Domain Not Served Here');
      return;
    }
    // Step 2: Require.
    const unsupported = request.has('require')
      ? request.getAll('require').filter((ext) => !SUPPORTED.has(ext.toLowerCase()))
      : NO_PATH;
    if (unsupported.length > 0) {
      st.reply(420, undefined, { headers: [{ name: 'unsupported', value: unsupported.join(', ') }] });
      return;
    }
    if (this.opts.isTrustedPeer?.(st.flow) && this.pathFlowGone(request, st)) return;
    // Step 3: authenticate. RFC 4475 regaut01: credentials only in a scheme we do
    // not know are no credentials at all; the client gets a challenge in one we do.
    if (request.has('authorization')) {
      const authorization = request.getAll('authorization');
      if (authorization.length > 0 && !authorization.some((a) => DIGEST_SCHEME.test(a)))
        request.remove('authorization');
    }
    const outcome = this.opts.authenticator.authenticate(request, 'www', st.flow, st);
    if (outcome instanceof Promise) {
      outcome.then(
        (o) => this.afterAuth(request, st, o),
        () => st.reply(500, 'Credential Store Unavailable'),
      );
    } else {
      this.afterAuth(request, st, outcome);
    }
  }

  private afterAuth(request: SipMessage, st: ServerTransaction, outcome: AuthOutcome): void {
    if (!outcome.ok) {
      if (!('reason' in outcome)) {
        st.reply(401, undefined, {
          toTag: outcome.toTag,
          headers: outcome.challenges.map((value) => ({ name: 'www-authenticate', value })),
        });
      } else {
        st.reply(outcome.status, outcome.reason);
      }
      return;
    }
    // Step 4: the authenticated user may only register its own AOR (no third-party registration).
    const toUri = request.toUri;
    if ((toUri ? uriAor(toUri) : undefined) !== outcome.aor) {
      st.reply(403, 'Forbidden - To does not match the authenticated user');
      return;
    }
    // The same text, from the credential cache: what is kept from here on (the binding, the
    // flow's signed-in users, the usage counts) does not hold on to this REGISTER's text.
    const aor = outcome.aor;
    st.flow.authenticated.add(aor);
    this.opts.onRegistered?.(aor);
    const failure = this.applyContacts(request, aor, st.flow);
    if (failure) {
      st.reply(failure.status, failure.reason, { headers: failure.headers });
      return;
    }
    this.replyWithBindings(request, st, aor);
  }

  /**
   * A trusted proxy in front of the user (the edge) says the user's own connection behind
   * its Path has gone: `Contact: *`, `Expires: 0`, the Path entry naming that connection and
   * P-Asserted-Identity for the To AOR. Only the bindings registered through that Path go
   * (after the connection grace), not the user's others. Says whether the request was one.
   */
  private pathFlowGone(request: SipMessage, st: ServerTransaction): boolean {
    const contacts = request.contacts;
    if (contacts.length !== 1 || contacts[0].uri !== '*' || request.expires !== 0) return false;
    const path = request.getAll('path');
    const asserted = request.get('p-asserted-identity');
    const toUri = request.toUri;
    if (path.length === 0 || !asserted || !toUri) return false;
    const aor = uriAor(toUri);
    const assertedUri = parseNameAddr(asserted)?.uri;
    const assertedParsed = assertedUri ? parseUri(assertedUri) : undefined;
    if (!assertedParsed || uriAor(assertedParsed) !== aor) return false;
    const token = /<sips?:([^@;>]+)@/i.exec(path[0])?.[1];
    if (!token) return false;
    this.opts.location.pathFlowClosed(aor, token);
    st.reply(200, undefined, {
      toTag: createTag(),
      headers: [{ name: 'date', value: this.dateHeader(this.now()) }],
    });
    return true;
  }

  private applyContacts(
    request: SipMessage,
    aor: string,
    flow: Flow,
  ): { status: number; reason?: string; headers?: SipHeader[] } | undefined {
    // Parsed with the message (the parser refuses a REGISTER with a malformed Contact).
    const contacts = request.contacts;
    if (request.hasMalformedContact()) return { status: 400, reason: 'Bad Request - malformed Contact' };
    if (contacts.length === 0) return undefined; // a query (RFC 3261 10.2.3)
    const contactUris = request.contactUris;
    const headerExpires = request.expires;
    const callId = request.callId;
    const cseq = request.cseq.seq;
    const now = this.now();

    if (contacts.length === 1 && contacts[0].uri === '*') {
      // RFC 3261 10.3 step 6: "*" only with Expires: 0.
      if (headerExpires !== 0) return { status: 400, reason: 'Bad Request - "*" Contact needs Expires: 0' };
      for (const b of this.opts.location.lookup(aor)) {
        if (b.callId === callId && b.cseq >= cseq)
          return { status: 400, reason: 'Bad Request - CSeq out of order' };
      }
      this.opts.location.removeAll(aor);
      return undefined;
    }

    const parsed: Array<{ na: NameAddr; uri: SipUri | undefined; expires: number }> = [];
    for (let i = 0; i < contacts.length; i++) {
      const na = contacts[i];
      if (na.uri === '*') return { status: 400, reason: 'Bad Request - "*" mixed with other Contacts' };
      const param = na.params.expires;
      let expires = param !== undefined && param !== null ? Number.parseInt(param, 10) : headerExpires;
      if (expires === undefined || Number.isNaN(expires)) expires = this.opts.defaultExpires;
      if (expires !== 0 && expires < this.opts.minExpires) {
        // RFC 3261 10.3 step 7: 423 with Min-Expires.
        return {
          status: 423,
          reason: 'Interval Too Brief',
          headers: [{ name: 'min-expires', value: String(this.opts.minExpires) }],
        };
      }
      parsed.push({ na, uri: contactUris[i], expires: Math.min(expires, this.opts.maxExpires) });
    }

    // What a binding keeps is copied out of the message (ownString): a slice of it would keep
    // the whole REGISTER in memory for as long as the binding lives.
    const received = request.has('path') ? request.getAll('path') : NO_PATH;
    const path = received.length > 0 ? received.map(ownString) : NO_PATH;
    const userAgentText = request.get('user-agent');
    const userAgent = userAgentText ? this.userAgents.intern(userAgentText) : '';
    const ownCallId = ownString(callId);
    for (const { na, uri: contactUri, expires } of parsed) {
      const existing = this.opts.location.findByContact(aor, na.uri);
      if (existing && existing.callId === callId && existing.cseq >= cseq) {
        return { status: 400, reason: 'Bad Request - CSeq out of order' };
      }
      if (expires === 0) {
        this.opts.location.remove(aor, na.uri);
        continue;
      }
      const instance = na.params['+sip.instance'] ?? undefined;
      const regIdText = na.params['reg-id'];
      // RFC 3327: behind a Path the proxy's route reaches the endpoint, not our connection
      // (the edge's, shared by its users), and the proxy says when the endpoint's own goes.
      const behindPath = path.length > 0;
      const flowOnly =
        !behindPath &&
        (flow.transport === 'ws' ||
          flow.transport === 'wss' ||
          regIdText !== undefined ||
          'ob' in (contactUri?.params ?? {}) ||
          (contactUri?.host.endsWith('.invalid') ?? true));
      const overFlow = !behindPath && routesOverFlow(flowOnly, contactUri?.host, contactUri?.port, flow);
      // The endpoint at the other end of this connection lives as long as the connection: a
      // contact we reach over it, or one naming the address its Via says it sent from (a
      // client listening on its own port, like baresip). A contact of some other address
      // (registered on another UA's behalf) lives until it expires, as over UDP.
      const tiedToConnection =
        !behindPath && flow.transport !== 'udp' && (overFlow || namesSentBy(contactUri, request, flow));
      const binding: Binding = {
        aor,
        contact: ownString(na.uri),
        instanceId: instance === undefined ? undefined : ownString(instance),
        regId: regIdText ? Number.parseInt(regIdText, 10) : undefined,
        callId: ownCallId,
        cseq,
        expiresAt: now + expires * 1000,
        q: na.params.q ? Number.parseFloat(na.params.q) || 1 : 1,
        userAgent,
        flowId: overFlow ? flow.id : undefined,
        connectionId: tiedToConnection ? flow.id : undefined,
        serverId: this.opts.serverId,
        path,
        flowOnly,
        source: this.sourceOf(flow),
      };
      if (!existing && this.opts.location.lookup(aor).length >= this.maxBindings) {
        return { status: 403, reason: `Forbidden - more than ${this.maxBindings} endpoints` };
      }
      this.opts.location.upsert(binding);
      this.opts.signIns?.registered(binding, !existing, now);
    }
    return undefined;
  }

  private sourceFlow: Flow | undefined;
  private source: Binding['source'];

  /**
   * A binding's source, one object per connection rather than one (and its address text) per
   * binding: a connection registers many users in a row (an edge, a load test, a client
   * refreshing), and each binding lives for as long as its registration.
   */
  private sourceOf(flow: Flow): Binding['source'] {
    if (flow !== this.sourceFlow || this.source === undefined) {
      this.sourceFlow = flow;
      this.source = Object.freeze({
        transport: flow.transport,
        address: `${hostReference(flow.remoteAddress)}:${flow.remotePort}`,
      });
    }
    return this.source;
  }

  private dateText = '';
  private dateSecond = -1;

  /** RFC 3261 10.3 step 8's Date, formatted once a second rather than once per REGISTER. */
  private dateHeader(now: number): string {
    const second = Math.floor(now / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.dateText = new Date(second * 1000).toUTCString();
    }
    return this.dateText;
  }

  private replyWithBindings(request: SipMessage, st: ServerTransaction, aor: string): void {
    const now = this.now();
    const headers: SipHeader[] = [];
    let outbound = false;
    for (const b of this.opts.location.lookup(aor)) {
      const params: Record<string, string | null> = {
        expires: String(Math.max(0, Math.round((b.expiresAt - now) / 1000))),
      };
      if (b.instanceId) params['+sip.instance'] = b.instanceId;
      if (b.regId !== undefined) {
        params['reg-id'] = String(b.regId);
        if (b.flowId === st.flow.id) outbound = true;
      }
      headers.push({ name: 'contact', value: formatNameAddr({ uri: b.contact, params }) });
    }
    if (request.has('path')) for (const p of request.getAll('path')) headers.push({ name: 'path', value: p });
    // RFC 5626 6: tell an outbound client its flow is being used.
    if (outbound) headers.push({ name: 'require', value: 'outbound' });
    headers.push({ name: 'date', value: this.dateHeader(now) });
    st.reply(200, undefined, { toTag: createTag(), headers });
  }
}

/** Does the contact name the host and port the request's top Via says it was sent by? */
function namesSentBy(contact: SipUri | undefined, request: SipMessage, flow: Flow): boolean {
  if (!contact) return false;
  const via = request.topVia;
  const defaultPort = flow.transport === 'tls' || flow.transport === 'wss' ? 5061 : 5060;
  return (
    bareHost(contact.host).toLowerCase() === bareHost(via.host).toLowerCase() &&
    (contact.port ?? defaultPort) === (via.port ?? defaultPort)
  );
}

function bareHost(host: string): string {
  return host.startsWith('[') ? host.slice(1, -1) : host;
}

/**
 * Should requests to this contact reuse the registration's connection? Always for flow-only
 * contacts; for the rest when the contact names the connection's own source (connection
 * reuse) or an address we could not reach anyway (a NATed client's private address).
 * A contact on the same host but another port is a client listening there (it asked to
 * be called back on that port).
 */
function routesOverFlow(
  flowOnly: boolean,
  host: string | undefined,
  port: number | undefined,
  flow: Flow,
): boolean {
  if (flowOnly) return true;
  if (host === undefined) return true;
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  if (bare === flow.remoteAddress) return (port ?? 5060) === flow.remotePort;
  return true;
}
