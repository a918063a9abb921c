import type { FederationEntry } from '../store/federation.js';

/** A federation policy problem a command or an edge reports (code from the CLI catalogue). */
export class FederationError extends Error {
  constructor(
    readonly code: 'INVALID_ARGUMENT' | 'FEDERATION_NOT_LISTED' | 'FEDERATION_CONFLICT',
    message: string,
  ) {
    super(message);
    this.name = 'FederationError';
  }
}

/** RFC 1035 / 1123 host name: letters, digits and hyphens in dot-separated labels. */
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * A partner domain or an edge FQDN as the policy keys it: lower case, no trailing dot, a
 * syntactically valid DNS name with at least two labels. Anything else is refused, so a
 * typo cannot silently allow nothing (or everything).
 */
export function normalizeFederationDomain(text: string, what = 'domain'): string {
  const name = text.trim().toLowerCase().replace(/\.$/, '');
  const labels = name.split('.');
  if (name.length > 253 || labels.length < 2 || !labels.every((l) => LABEL.test(l))) {
    throw new FederationError('INVALID_ARGUMENT', `${JSON.stringify(text)} is not a valid ${what} name`);
  }
  return name;
}

/** Why a partner's request is refused at the edge (the `reason` label of the refusal metric). */
export type FederationRefusal = 'not_allowed' | 'blocked' | 'certificate' | 'own_domain';

export type InboundDecision =
  | { ok: true; via: 'direct' | 'clearinghouse' }
  | { ok: false; refusal: FederationRefusal; status: 403; warning: string };

export type OutboundRoute =
  | { kind: 'refused'; refusal: FederationRefusal; status: 403; warning: string }
  /**
   * To the partner's edge: the pinned FQDN, or whatever its SRV record names; when it
   * publishes none, to the clearinghouse (`fallback`) if there is one.
   */
  | { kind: 'direct'; edgeFqdn?: string; fallback?: string };

/**
 * The effective federation policy: closed unless a domain is allowed, blocked always wins,
 * a partner pinned to an edge FQDN is accepted only from a certificate naming it, and a
 * clearinghouse relays for allowed partners that have no edge of their own in the policy.
 * Immutable: an edge builds a new one when the store says the lists changed.
 */
export class FederationPolicy {
  private readonly allowed = new Map<string, FederationEntry>();
  private readonly blocked = new Map<string, FederationEntry>();
  readonly clearinghouse?: string;

  constructor(
    entries: readonly FederationEntry[],
    private readonly ownDomains: readonly string[] = [],
  ) {
    let clearinghouse: string | undefined;
    for (const e of entries) {
      if (e.action === 'allow') this.allowed.set(e.domain, e);
      else if (e.action === 'block') this.blocked.set(e.domain, e);
      else clearinghouse = e.domain;
    }
    this.clearinghouse = clearinghouse;
  }

  /**
   * May a request claiming to come from `domain` be accepted from a peer whose certificate
   * carries `peerNames`? `srvTargets` are the host names the partner's SRV record lists
   * (the edge resolves them) for partners not pinned to an FQDN.
   */
  inbound(domain: string, peerNames: readonly string[], srvTargets: readonly string[] = []): InboundDecision {
    const d = domain.toLowerCase();
    if (this.ownDomains.includes(d)) return refuse('own_domain', `${d} is our own domain`);
    if (this.blocked.has(d)) return refuse('blocked', `federation with ${d} is blocked`);
    const partner = this.allowed.get(d);
    if (!partner) return refuse('not_allowed', `federation with ${d} is not allowed`);
    const names = peerNames.map((n) => n.toLowerCase());
    const expected = partner.edgeFqdn ? [partner.edgeFqdn] : srvTargets.map((t) => t.toLowerCase());
    if (expected.some((n) => names.includes(n))) return { ok: true, via: 'direct' };
    if (this.clearinghouse && names.includes(this.clearinghouse)) return { ok: true, via: 'clearinghouse' };
    return refuse(
      'certificate',
      `the certificate (${names.join(', ') || 'no names'}) does not name ${d}'s edge (${expected.join(', ') || 'no SRV target'})`,
    );
  }

  /** Where a request for a user of `domain` goes. */
  outbound(domain: string): OutboundRoute {
    const d = domain.toLowerCase();
    if (this.ownDomains.includes(d))
      return { ...refuse('own_domain', `${d} is our own domain`), kind: 'refused' };
    if (this.blocked.has(d))
      return { ...refuse('blocked', `federation with ${d} is blocked`), kind: 'refused' };
    const partner = this.allowed.get(d);
    if (!partner) return { ...refuse('not_allowed', `federation with ${d} is not allowed`), kind: 'refused' };
    if (partner.edgeFqdn) return { kind: 'direct', edgeFqdn: partner.edgeFqdn };
    return this.clearinghouse ? { kind: 'direct', fallback: this.clearinghouse } : { kind: 'direct' };
  }

  /** The lists as `parley federation show` prints them. */
  describe(): EffectivePolicy {
    return {
      default: 'closed',
      allowed: [...this.allowed.values()].map((e) => ({
        domain: e.domain,
        edge: e.edgeFqdn ?? 'SRV _sipfederationtls._tcp',
        note: e.note,
      })),
      blocked: [...this.blocked.values()].map((e) => ({ domain: e.domain, note: e.note })),
      clearinghouse: this.clearinghouse ?? null,
    };
  }
}

export interface EffectivePolicy {
  default: 'closed';
  allowed: Array<{ domain: string; edge: string; note: string }>;
  blocked: Array<{ domain: string; note: string }>;
  clearinghouse: string | null;
}

function refuse(refusal: FederationRefusal, warning: string): InboundDecision & { ok: false } {
  return { ok: false, refusal, status: 403, warning };
}
