import type { Logger } from 'pino';
import type { AuthenticatedParty, RequestHandler } from '../proxy/core.js';
import type { SipMessage } from '../sip/message.js';
import { CLIENT_POLICIES_CHANNEL, type ClientPolicyRepository } from '../store/clients.js';
import type { Database } from '../store/sql.js';
import type { ServerTransaction } from '../transaction/layer.js';
import type { Flow } from '../transport/flow.js';
import { forgetOldest } from '../transport/limits.js';
import {
  type ClientAction,
  type ClientDecision,
  ClientPolicy,
  readUserAgent,
  refusalPhrase,
  refusalWarning,
} from './policy.js';

export interface ClientGateOptions {
  /** The warn-agent of refusals' Warning headers (RFC 3261 20.43): the server's domain. */
  domain: string;
  log: Logger;
  /** The User-Agent an authenticated user's endpoint registered on this flow, when a request carries none. */
  registeredUserAgent?: (aor: string, flowId: string) => string | undefined;
  onRefused?: (action: Exclude<ClientAction, 'allow'>, method: string) => void;
  /**
   * A REGISTER that adds or refreshes a binding was refused on this flow: the endpoint's
   * existing binding, publications and subscriptions end now, not at expiry (the caller
   * checks the binding is this endpoint's own: same flow and Call-ID).
   */
  onRegisterRefused?: (request: SipMessage, flow: Flow) => void;
}

/** Flows remembered as refused; past this the oldest are forgotten (UDP flows never close). */
const MAX_REFUSED_FLOWS = 65_536;

/** One product and version seen among the endpoints signed in now, and what the rules say of it today. */
export interface ClientEndpointCount {
  product: string;
  version: string;
  endpoints: number;
  /** What the current rules decide for this product and version: a blocked one goes at its next refresh. */
  action: ClientAction;
}

/**
 * The client version rules as a running server applies them: compiled once per change (the
 * store announces changes on CLIENT_POLICIES_CHANNEL, so `parley clients policy` takes effect
 * without a restart), checked on REGISTER before authentication and on every SUBSCRIBE,
 * PUBLISH and MESSAGE of a local user, so an endpoint allowed before a rule changed is refused
 * at its next refresh or message. Nothing here touches the store per request.
 */
export class ClientGate {
  private policy = ClientPolicy.allowAll();
  /**
   * Flows whose REGISTER the rules refused, with the decision: every SUBSCRIBE, PUBLISH and
   * MESSAGE on them is refused too, User-Agent or not, until a REGISTER on the flow is
   * admitted (the rules changed back) or the flow closes.
   */
  private readonly refusedFlows = new Map<string, ClientDecision>();

  constructor(private readonly opts: ClientGateOptions) {}

  get current(): ClientPolicy {
    return this.policy;
  }

  /** Loads the rules and follows their changes; returns the unlisten function. */
  async follow(db: Database, repo: ClientPolicyRepository): Promise<() => Promise<void>> {
    const reload = async () => {
      const { rules, fallback } = await repo.load();
      this.policy = new ClientPolicy(rules, fallback);
      this.opts.log.info({ rules: rules.length, default: fallback.action }, 'client version rules loaded');
    };
    const unlisten = await db.listen(CLIENT_POLICIES_CHANNEL, () => {
      reload().catch((err: unknown) =>
        this.opts.log.warn({ err }, 'client version rules could not be reloaded'),
      );
    });
    await reload();
    return unlisten;
  }

  /** Replaces the rules directly (tests, and a server given them without a store). */
  use(policy: ClientPolicy): void {
    this.policy = policy;
  }

  /** Wraps the registrar: a REGISTER from a refused client gets 403 with a Warning, before any challenge. */
  guardRegistrar<T extends { handle(request: SipMessage, st: ServerTransaction): void }>(
    registrar: T,
  ): { handle(request: SipMessage, st: ServerTransaction): void } {
    return {
      handle: (request, st) => {
        if (isRemoval(request)) {
          registrar.handle(request, st);
          return;
        }
        const decision = this.policy.allowsAll ? undefined : this.policy.decide(request.get('user-agent'));
        if (decision === undefined || decision.action === 'allow') {
          this.refusedFlows.delete(st.flow.id);
          registrar.handle(request, st);
          return;
        }
        this.refuse(request, st, decision);
        // Behind a Path (the edge) the flow is the proxy's, shared by many users: not marked.
        if (request.getAll('path').length > 0) {
          this.opts.onRegisterRefused?.(request, st.flow);
          return;
        }
        this.refusedFlows.set(st.flow.id, decision);
        forgetOldest(this.refusedFlows, MAX_REFUSED_FLOWS);
        this.opts.onRegisterRefused?.(request, st.flow);
      },
    };
  }

  /** Wraps a service (presence, IM) for requests of local users. */
  guard(service: RequestHandler): RequestHandler {
    return {
      handle: (request, st, party) => {
        const refused = this.refusedFlows.get(party.flow.id);
        if (refused !== undefined && request.expires !== 0 && this.isLocal(party)) {
          this.refuse(request, st, refused);
          return;
        }
        if (this.policy.allowsAll || request.expires === 0 || !this.isLocal(party)) {
          service.handle(request, st, party);
          return;
        }
        let ua = request.get('user-agent');
        if (ua === undefined && party.aor) ua = this.opts.registeredUserAgent?.(party.aor, party.flow.id);
        if (this.admits(request, ua, st)) service.handle(request, st, party);
      },
    };
  }

  /** The flow closed: nothing more comes on it. */
  flowClosed(flowId: string): void {
    this.refusedFlows.delete(flowId);
  }

  private counted = {
    at: Number.NEGATIVE_INFINITY,
    counts: [] as Array<ClientEndpointCount & { sample: string }>,
  };

  /**
   * Endpoints signed in, by product and version, with the decision the rules make for each
   * now. The counting walks every binding, so it runs at most every few seconds however
   * often a load balancer asks for /health; the decisions are always today's.
   */
  summarize(userAgents: () => Iterable<string>, now = Date.now()): ClientEndpointCount[] {
    if (now - this.counted.at > SUMMARY_MS) {
      const counts = new Map<string, ClientEndpointCount & { sample: string }>();
      for (const ua of userAgents()) {
        const { product, version } = readUserAgent(ua);
        const key = `${product}\u0000${version}`;
        const entry = counts.get(key);
        if (entry) entry.endpoints++;
        else counts.set(key, { product, version, endpoints: 1, action: 'allow', sample: ua });
      }
      this.counted = {
        at: now,
        counts: [...counts.values()].sort(
          (a, b) => b.endpoints - a.endpoints || a.product.localeCompare(b.product),
        ),
      };
    }
    return this.counted.counts.map(({ sample, ...c }) => ({
      ...c,
      action: this.policy.decide(sample).action,
    }));
  }

  private isLocal(party: AuthenticatedParty): boolean {
    // Partners' users (federation, through a trusted edge) are their own administrators' business.
    return party.aor === undefined || party.aor.endsWith(`@${this.opts.domain}`);
  }

  private admits(request: SipMessage, ua: string | undefined, st: ServerTransaction): boolean {
    const decision = this.policy.decide(ua);
    if (decision.action === 'allow') return true;
    this.refuse(request, st, decision);
    return false;
  }

  private refuse(request: SipMessage, st: ServerTransaction, decision: ClientDecision): void {
    this.opts.onRefused?.(decision.action as Exclude<ClientAction, 'allow'>, request.method);
    this.opts.log.debug(
      { method: request.method, userAgent: request.get('user-agent'), rule: decision.rule?.id },
      'client refused by the version rules',
    );
    st.reply(403, refusalPhrase(decision), {
      headers: [{ name: 'warning', value: refusalWarning(decision, this.opts.domain) }],
    });
  }
}

const SUMMARY_MS = 5_000;

/** A REGISTER that only removes bindings (RFC 3261 10.2.2): always let a client sign out. */
function isRemoval(request: SipMessage): boolean {
  if (request.expires === 0) return true;
  const contact = request.get('contact');
  return contact !== undefined && contact.trim() === '*';
}
